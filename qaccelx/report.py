"""Assemble the results of a run, print them as the seed's table and save them as JSON."""

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from qaccelx.benchmark import NOISY_SPREAD
from qaccelx.stats import Predictions, compare_predictions, top1_statistics

__all__ = ["build_results", "format_report", "results_table_rows", "write_results_json"]

# The arithmetic a row's name promises, as OpenVINO names it: the table says when it differs.
_PROMISED_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "i8"}


def build_results(
    model: str,
    pretrained: bool,
    baseline: str,
    optimized: str,
    benchmarks: dict[str, dict[str, Any]],
    evaluations: dict[str, dict[str, Any]],
    extra: dict[str, Any],
    predictions: dict[str, Predictions] | None = None,
) -> dict[str, Any]:
    """The results document: one entry per row, the speed-up and the accuracy loss.

    With ``predictions``, each row's top-1 gets its 95 % Wilson interval, and every row is
    compared image by image with the baseline (``agreement``, keyed by row).

    Args:
        model: The model name as given.
        pretrained: False for random weights: accuracy figures are then None.
        baseline: The row speed-ups are measured against (fp32 or fp16).
        optimized: The optimized row (int8 or int8_weights).
        benchmarks: Row -> benchmark results.
        evaluations: Row -> evaluation results.
        extra: Further top-level keys (stages, environment, settings, paths).
        predictions: Row -> per-image predictions on the evaluation images.
    """
    variants = {
        name: _variant(benchmarks[name], evaluations[name], pretrained) for name in benchmarks
    }
    if predictions and pretrained:
        for name, row in variants.items():
            statistics = top1_statistics(predictions[name])
            row["top1_ci95"] = [round(bound, 2) for bound in statistics["top1_ci95"]]
            row["correct"] = statistics["correct"]
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
        "speedup_baseline": {"variant": baseline, "executed": base["precision_label"]},
        "accuracy_loss": accuracy_loss,
        "agreement": _agreements(predictions, baseline, pretrained) if predictions else {},
        **extra,
    }


def results_table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per variant, for the console and the Prefect table artifact.

    A figure whose run was noisy (IQR / median above 10 %) is shown rounded, with ``~`` and
    ``noisy``, instead of with two precise-looking decimals.
    """
    baseline = results["baseline"]
    base_latency = results["variants"][baseline]["latency_ms"]["median"]
    rows = []
    for name, row in results["variants"].items():
        agreement = results.get("agreement", {}).get(name)
        latency = row["latency_ms"]
        rows.append({
            "variant": name,
            "executed": _executed_cell(name, row),
            "top1_%": _fmt(row["top1"]),
            "top1_ci95_%": _fmt_interval(row.get("top1_ci95")),
            "top5_%": _fmt(row["top5"]),
            "images": row["images"],
            f"changed_vs_{baseline}": _fmt_agreement(agreement),
            "latency_median_ms": _fmt_timing(latency["median"], latency.get("spread"), 2),
            "latency_p90_ms": f"{latency['p90']:.2f}",
            "latency_spread_%": _fmt_percent(latency.get("spread")),
            "throughput_fps": _fmt_timing(row["throughput_fps"], row.get("throughput_spread"), 1),
            f"speedup_vs_{baseline}": _fmt_ratio(
                base_latency / latency["median"],
                _is_noisy(latency) or _is_noisy(results["variants"][baseline]["latency_ms"]),
            ),
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
        f"Original ({base}) time:      {_fmt_latency(base_row)} ms (batch 1, median)",
        f"Optimized ({opt}) time:     {_fmt_latency(opt_row)} ms (batch 1, median)",
        f"Speedup vs {base} ({base_row['precision_label']}): "
        f"{_fmt_ratio(results['speedup'], base_row['noisy'] or opt_row['noisy'])} latency, "
        f"{_fmt_ratio(results['throughput_speedup'], base_row['noisy'] or opt_row['noisy'])} "
        "throughput",
        f"Accuracy loss:             {'n/a' if loss is None else f'{loss:.2f} points'}",
    ]
    lines += _agreement_lines(results) + _precision_notes(results) + _noise_notes(results)
    lines += _machine_lines(results)
    if not results["pretrained"]:
        lines.append("Random weights: accuracy figures are meaningless and are not reported.")
    if results.get("optimized_model"):
        lines.append(f"Optimized model:           {results['optimized_model']}")
    if results.get("export_parity"):
        parity = results["export_parity"]
        lines.append(
            f"Export parity (debug):     max |torch - OpenVINO| {parity['max_abs_diff']:.2e}, "
            f"top-1 agreement {parity['top1_agreement'] * 100:.0f}% on {parity['images']} images"
        )
    lines += ["", "Stages:"] + [_stage_line(stage) for stage in results.get("stages", [])]
    return "\n".join(lines)


def _stage_line(stage: dict[str, Any]) -> str:
    return f"  {stage['name']:<28} {stage['status']:<9} {stage['seconds']:8.2f} s"


def write_results_json(results: dict[str, Any], path: Path) -> None:
    """Write the results JSON atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as stream:
            json.dump(results, stream, indent=2)
            stream.write("\n")

        # mkstemp makes the file private; results are as readable as the model beside them.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _variant(bench: dict[str, Any], evaluation: dict[str, Any], pretrained: bool) -> dict:
    latency, throughput = bench["latency_ms"], bench["throughput"]
    return {
        "top1": round(evaluation["top1"], 2) if pretrained else None,
        "top1_ci95": None,
        "correct": None,
        "top5": round(evaluation["top5"], 2) if pretrained else None,
        "images": evaluation["images"],
        "skipped_images": len(evaluation["skipped"]),
        "latency_ms": {
            **{k: round(latency[k], 3) for k in ("median", "p90", "min", "max")},
            "spread": _round_or_none(latency.get("spread"), 4),
        },
        "latency_iterations": latency["iterations"],
        "latency_streams": bench.get("latency_streams"),
        "latency_threads": bench.get("latency_threads"),
        "throughput_fps": round(bench["throughput_fps"], 2),
        "throughput_spread": _round_or_none(throughput.get("spread"), 4),
        "throughput_batch_size": throughput["batch_size"],
        "throughput_requests": throughput.get("requests"),
        "throughput_streams": throughput.get("streams"),
        "throughput_threads": throughput.get("threads"),
        "noisy": bool(bench.get("noisy", False)),
        "load_average": bench.get("load_average"),
        "requested_precision": bench.get("requested_precision"),
        "inference_precision": bench["inference_precision"],
        "precision_label": bench["label"],
        "compute_layers": bench["compute_layers"],
    }


def _agreements(
    predictions: dict[str, Predictions],
    baseline: str,
    pretrained: bool,
) -> dict[str, dict[str, Any]]:
    # With random weights, "right" and "wrong" mean nothing; how many predictions changed
    # still measures how faithfully a row reproduces the baseline.
    agreements = {}
    for name in predictions:
        if name == baseline:
            continue
        compared = compare_predictions(predictions[baseline], predictions[name])
        agreement = {"vs": baseline, **compared}
        agreement["agreement"] = round(agreement["agreement"], 2)
        if not pretrained:
            agreement.update(right_to_wrong=None, wrong_to_right=None, mcnemar_p=None)
        agreements[name] = agreement
    return agreements


def _agreement_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for name, agreement in results.get("agreement", {}).items():
        line = (
            f"Agreement {name} vs {agreement['vs']}:"
            f"{' ' * max(1, 12 - len(name + agreement['vs']))}"
            f"{agreement['same_top1']} of {agreement['images']} images keep their top-1"
        )
        if agreement["right_to_wrong"] is not None:
            verdict = "a real change" if agreement["mcnemar_p"] < 0.05 else "within noise"
            line += (
                f"; {agreement['right_to_wrong']} right->wrong, {agreement['wrong_to_right']} "
                f"wrong->right (McNemar p={agreement['mcnemar_p']:.2g}: {verdict})"
            )
        lines.append(line)
    return lines


def _executed_cell(name: str, row: dict[str, Any]) -> str:
    # Say so when a row did not run in the precision its name promises (FP16 IRs run in BF16
    # or FP32 on CPUs without FP16 arithmetic; INT8 IRs can fall back to float).
    label = row["precision_label"]
    promised = _PROMISED_PRECISION.get(name)
    if promised and promised not in label.split("+"):
        return f"{label} (not {promised})"
    return label


def _precision_notes(results: dict[str, Any]) -> list[str]:
    notes = []
    for name, row in results["variants"].items():
        promised = _PROMISED_PRECISION.get(name)
        if promised and promised not in row["precision_label"].split("+"):
            notes.append(
                f"Note: the {name} row executed as {row['precision_label']}, not {promised}: "
                "OpenVINO's CPU plugin chose it on this CPU; read its figures as "
                f"{row['precision_label']}."
            )
    return notes


def _noise_notes(results: dict[str, Any]) -> list[str]:
    noisy = [name for name, row in results["variants"].items() if row.get("noisy")]
    if not noisy:
        return []
    return [
        f"Noisy: timings of {', '.join(noisy)} spread by more than {NOISY_SPREAD:.0%} "
        "(interquartile range over median); other work was competing for the CPU. Their "
        "figures are rounded and marked ~; for precise ones, re-run on a quiet machine with "
        "--recompute benchmark (a plain re-run reuses these timings from the store)."
    ]


def _machine_lines(results: dict[str, Any]) -> list[str]:
    machine = results.get("environment")
    if not machine:
        return []
    base_row = results["variants"][results["baseline"]]
    features = [name for name, present in machine.get("features", {}).items() if present]
    return [
        f"Machine:                   {machine['cpu']}, {machine['cores']} logical CPUs, "
        f"{', '.join(features) or 'no VNNI/AMX/BF16/FP16'}; OpenVINO "
        f"{machine['versions'].get('openvino')} capabilities "
        f"{' '.join(machine['openvino_capabilities'])}; latency runs used "
        f"{base_row['latency_threads']} threads in {base_row['latency_streams']} stream(s)"
    ]


def _fmt_latency(row: dict[str, Any]) -> str:
    return _fmt_timing(row["latency_ms"]["median"], row["latency_ms"].get("spread"), 2)


def _is_noisy(latency: dict[str, Any]) -> bool:
    return latency.get("spread") is not None and latency["spread"] > NOISY_SPREAD


def _fmt_ratio(ratio: float, noisy: bool) -> str:
    # A ratio of noisy figures is no more precise than they are.
    return f"~{ratio:.1f}x" if noisy else f"{ratio:.2f}x"


def _fmt_timing(value: float, spread: float | None, decimals: int) -> str:
    # A noisy figure keeps two significant digits: more would claim a precision it lacks.
    if spread is not None and spread > NOISY_SPREAD:
        return f"~{float(f'{value:.2g}'):g} noisy"
    return f"{value:.{decimals}f}"


def _fmt_interval(interval: list[float] | None) -> str:
    return "n/a" if interval is None else f"{interval[0]:.1f}-{interval[1]:.1f}"


def _fmt_agreement(agreement: dict[str, Any] | None) -> str:
    if agreement is None:
        return "-"
    if agreement["right_to_wrong"] is None:
        return f"{agreement['changed_top1']}"
    return (
        f"{agreement['changed_top1']} (-{agreement['right_to_wrong']} "
        f"+{agreement['wrong_to_right']})"
    )


def _fmt_percent(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{fraction * 100:.1f}"


def _round_or_none(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _fmt(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:.2f}{unit}"
