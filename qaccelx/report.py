"""Assemble the results of a run, print them as the seed's table and save them as JSON."""

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["build_results", "format_report", "results_table_rows", "write_results_json"]


def build_results(
    model: str,
    pretrained: bool,
    baseline: str,
    optimized: str,
    benchmarks: dict[str, dict[str, Any]],
    evaluations: dict[str, dict[str, Any]],
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The results document: one entry per row, the speed-up and the accuracy loss.

    Args:
        model: The model name as given.
        pretrained: False for random weights: accuracy figures are then None.
        baseline: The row speed-ups are measured against (fp32 or fp16).
        optimized: The optimized row (int8 or int8_weights).
        benchmarks: Row -> benchmark results.
        evaluations: Row -> evaluation results.
        extra: Further top-level keys (stages, environment, settings, paths).
    """
    variants = {name: _variant(benchmarks[name], evaluations[name], pretrained) for name in benchmarks}
    base, opt = variants[baseline], variants[optimized]
    accuracy_loss = None
    if pretrained:
        accuracy_loss = round(base["top1"] - opt["top1"], 2)
    return {
        "model": model,
        "pretrained": pretrained,
        "baseline": baseline,
        "optimized": optimized,
        "variants": variants,
        "speedup": round(base["latency_ms"]["median"] / opt["latency_ms"]["median"], 3),
        "throughput_speedup": round(opt["throughput_fps"] / base["throughput_fps"], 3),
        "accuracy_loss": accuracy_loss,
        **extra,
    }


def results_table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per variant, for the console and the Prefect table artifact."""
    rows = []
    for name, row in results["variants"].items():
        rows.append({
            "variant": name,
            "executed": row["precision_label"],
            "top1_%": _fmt(row["top1"]),
            "top5_%": _fmt(row["top5"]),
            "images": row["images"],
            "latency_median_ms": f"{row['latency_ms']['median']:.2f}",
            "latency_p90_ms": f"{row['latency_ms']['p90']:.2f}",
            "throughput_fps": f"{row['throughput_fps']:.1f}",
        })
    return rows


def format_report(results: dict[str, Any]) -> str:
    """The console report: the per-row table, then the seed's summary lines."""
    rows = results_table_rows(results)
    headers = list(rows[0])
    widths = [max(len(h), *(len(str(r[h])) for r in rows)) for h in headers]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(r[h]).ljust(w) for h, w in zip(headers, widths)) for r in rows]

    base, opt = results["baseline"], results["optimized"]
    base_row, opt_row = results["variants"][base], results["variants"][opt]
    loss = results["accuracy_loss"]
    lines += [
        "",
        f"Model:                     {results['model']}",
        f"Original ({base}) accuracy:  {_fmt(base_row['top1'], '%')}",
        f"Optimized ({opt}) accuracy: {_fmt(opt_row['top1'], '%')}",
        f"Original ({base}) time:      {base_row['latency_ms']['median']:.2f} ms (batch 1, median)",
        f"Optimized ({opt}) time:     {opt_row['latency_ms']['median']:.2f} ms (batch 1, median)",
        f"Speedup vs {base}:           {results['speedup']:.2f}x latency, "
        f"{results['throughput_speedup']:.2f}x throughput",
        f"Accuracy loss:             {'n/a' if loss is None else f'{loss:.2f} points'}",
    ]
    if not results["pretrained"]:
        lines.append("Random weights: accuracy figures are meaningless and are not reported.")
    if results.get("optimized_model"):
        lines.append(f"Optimized model:           {results['optimized_model']}")
    return "\n".join(lines)


def write_results_json(results: dict[str, Any], path: Path) -> None:
    """Write the results JSON atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as stream:
            json.dump(results, stream, indent=2)
            stream.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _variant(bench: dict[str, Any], evaluation: dict[str, Any], pretrained: bool) -> dict:
    return {
        "top1": round(evaluation["top1"], 2) if pretrained else None,
        "top5": round(evaluation["top5"], 2) if pretrained else None,
        "images": evaluation["images"],
        "skipped_images": len(evaluation["skipped"]),
        "latency_ms": {k: round(bench["latency_ms"][k], 3) for k in ("median", "p90", "min", "max")},
        "latency_iterations": bench["latency_ms"]["iterations"],
        "throughput_fps": round(bench["throughput_fps"], 2),
        "throughput_batch_size": bench["throughput"]["batch_size"],
        "inference_precision": bench["inference_precision"],
        "precision_label": bench["label"],
        "compute_layers": bench["compute_layers"],
    }


def _fmt(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.2f}{unit}"
