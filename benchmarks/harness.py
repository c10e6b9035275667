"""The project's speed record: batch-1 latency of the five seed models in every precision.

    python benchmarks/harness.py --cache_dir /tmp/qaccelx-bench --benchmark_seconds 5

For each model (random weights: speed does not depend on them) it times the FP32 IR forced to
f32, the same IR in BF16 where the CPU computes BF16 natively, the INT8 IR quantized with the
model family's recipe (``auto``) and the INT8 IR quantized with plain NNCF defaults, and prints
one table with the paired ratios. Prints, never asserts; ``--output`` also saves it as JSON.
"""

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from _irs import SHARED_IMAGES, build_irs

from qaccelx.benchmark import NOISY_SPREAD, benchmark_latency, describe_machine
from qaccelx.recipes import resolve_recipe
from qaccelx.runtime import has_native_bf16

logger = logging.getLogger("harness")

# The five models the project is verified on (../shared/DESIGN.md).
SEED_MODELS = (
    "resnet50",
    "mobilenetv2_100",
    "swin_tiny_patch4_window7_224",
    "tnt_s_patch16_224",
    "deit_base_patch16_224",
)

# Ratios printed per model: (column, numerator row, denominator row), each a speed-up.
_RATIOS = (
    ("fp32/bf16", "fp32", "bf16"),
    ("fp32/int8", "fp32", "int8"),
    ("bf16/int8", "bf16", "int8"),
    ("nncf/recipe", "int8_nncf", "int8"),
)


def main() -> None:
    """Build every IR, time every row and print the table."""
    args = _parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    rows = ["fp32", "bf16", "int8", "int8_nncf"] if has_native_bf16() else [
        "fp32", "int8", "int8_nncf"]

    record = {"machine": describe_machine(), "benchmark_seconds": args.benchmark_seconds,
              "models": {}}
    for model in args.models:
        record["models"][model] = _time_model(model, rows, args)
    record["load_average_end"] = list(os.getloadavg())
    _print_table(record, rows)
    if args.output:
        args.output.write_text(json.dumps(record, indent=2) + "\n")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SEED_MODELS))
    parser.add_argument("--benchmark_seconds", type=float, default=10.0,
                        help="minimum measuring time of each latency run")
    parser.add_argument("--calibration_size", type=int, default=100)
    parser.add_argument("--dataset", type=Path, default=SHARED_IMAGES)
    parser.add_argument("--cache_dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "qaccelx-bench")
    parser.add_argument("--output", type=Path, help="also write the record as JSON here")
    return parser.parse_args()


def _time_model(model: str, rows: list[str], args: argparse.Namespace) -> dict[str, Any]:
    irs = build_irs(model, args.cache_dir, args.dataset, args.calibration_size,
                    {"int8": "auto", "int8_nncf": "nncf-defaults"})
    timings: dict[str, dict[str, Any]] = {}
    for row in rows:
        # The bf16 row is the FP32 IR compiled with a bf16 precision hint.
        xml = irs.xml["fp32" if row == "bf16" else row]
        if row == "int8_nncf" and xml == irs.xml["int8"]:
            # The recipe is NNCF's defaults: one IR, timed once (two timings would differ by
            # the machine's drift alone).
            timings[row] = {**timings["int8"], "same_ir_as": "int8"}
            continue
        variant = "int8" if row.startswith("int8") else row
        result = benchmark_latency(xml, variant, args.benchmark_seconds)
        timings[row] = {
            "median_ms": result["latency_ms"]["median"],
            "spread": result["latency_ms"]["spread"],
            "executed": result["label"],
            "iterations": result["latency_ms"]["iterations"],
        }
        logger.info("%s %s: %.2f ms (%s)", model, row, timings[row]["median_ms"], result["label"])
    return {"recipe": resolve_recipe("auto", model).name, "rows": timings}


def _print_table(record: dict[str, Any], rows: list[str]) -> None:
    machine = record["machine"]
    ratios = [ratio for ratio in _RATIOS if ratio[1] in rows and ratio[2] in rows]
    print(f"\nBatch-1 latency, median ms (executed precision), at least "
          f"{record['benchmark_seconds']:g} s per row; random weights")
    print(f"Machine: {machine['cpu']}, {machine['cores']} CPUs, OpenVINO "
          f"{machine['versions']['openvino']}, capabilities "
          f"{' '.join(machine['openvino_capabilities'])}; load average at the end "
          f"{' '.join(f'{v:.2f}' for v in record['load_average_end'])}")
    header = f"{'model':<30}{'recipe':<15}" + "".join(f"{row:>17}" for row in rows)
    header += "".join(f"{name:>12}" for name, _, _ in ratios)
    print(header + "\n" + "-" * len(header))
    for model, result in record["models"].items():
        timings = result["rows"]
        line = f"{model:<30}{result['recipe']:<15}"
        line += "".join(f"{_cell(timings[row]):>17}" for row in rows)
        line += "".join(f"{_ratio(timings, top, bottom):>12}" for _, top, bottom in ratios)
        print(line)
    print(f"~ marks a noisy figure: its interquartile range exceeded {NOISY_SPREAD:.0%} of the "
          "median (other work on the machine).")


def _ratio(timings: dict[str, Any], top: str, bottom: str) -> str:
    if timings[top].get("same_ir_as") == bottom:
        return "same IR"
    return f"{timings[top]['median_ms'] / timings[bottom]['median_ms']:.2f}x"


def _cell(timing: dict[str, Any]) -> str:
    mark = "~" if timing["spread"] > NOISY_SPREAD else ""
    return f"{mark}{timing['median_ms']:.2f} ({timing['executed']})"


if __name__ == "__main__":
    main()
