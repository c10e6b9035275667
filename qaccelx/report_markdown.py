"""The run report as Markdown, for the Prefect UI: results, settings, machine and versions."""

from typing import Any

from qaccelx.report import format_report

__all__ = ["format_markdown_report"]


def format_markdown_report(results: dict[str, Any]) -> str:
    """The console report plus everything needed to repeat the run, as Markdown.

    Args:
        results: The results document of one run (``qaccelx.report.build_results``).

    Returns:
        Markdown: the seed-style report in a code block, where the optimized model is, then
        tables of the settings, the machine and the library versions.
    """
    environment = results.get("environment", {})
    machine = {name: value for name, value in environment.items() if name != "versions"}
    sections = [
        f"# QAccelX report: {results['model']}",
        f"```\n{format_report(results)}\n```",
        f"Optimized model: `{results.get('optimized_model', 'n/a')}`",
        "## Settings",
        _key_value_table(results.get("settings", {})),
        "## Machine",
        _key_value_table(machine),
        "## Versions",
        _key_value_table(environment.get("versions", {})),
    ]
    return "\n\n".join(sections)


def _key_value_table(values: dict[str, Any]) -> str:
    lines = ["| name | value |", "|---|---|"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in values.items()]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    # Lists such as ISA flags read better comma-separated; a pipe would end the cell.
    text = ", ".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
    return text.replace("|", "\\|")
