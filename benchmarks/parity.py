"""Compare QAccelX's timings with OpenVINO's benchmark_app on the same IR, back to back.

    python benchmarks/parity.py --cache_dir /tmp/qaccelx-bench --seconds 20

For each IR (resnet50 FP32 and INT8 by default, random weights) and each measurement, the tool
and ``benchmark_app`` run alternately with the same hint, precision, static shape and duration,
``--repeats`` times each; the medians of their figures and the ratio tool / benchmark_app are
printed. The goal is a latency within 5 % and a throughput within 10 %. Prints, never asserts:
a busy machine moves both figures.
"""

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import openvino as ov
from _irs import SHARED_IMAGES, build_irs

from qaccelx.benchmark import (
    benchmark_latency,
    benchmark_lock,
    benchmark_throughput,
    describe_machine,
)
from qaccelx.runtime import precision_hint

logger = logging.getLogger("parity")

# Agreement the issue asks for: latency within 5 %, throughput within 10 %.
_GOALS = {"latency_ms": 0.05, "throughput_fps": 0.10}


def main() -> None:
    """Build the IRs, time them both ways and print the comparison."""
    args = _parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = _find_benchmark_app()
    irs = build_irs(args.model, args.cache_dir, args.dataset, args.calibration_size,
                    {"int8": "auto"})

    rows = []
    for variant in args.variants:
        xml = irs.xml[variant]
        rows.append(_compare_latency(app, xml, variant, args.seconds, args.repeats))
        rows.append(
            _compare_throughput(app, xml, variant, args.batch_size, args.seconds, args.repeats)
        )
    _print_table(args, rows)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50", help="timm model (random weights)")
    parser.add_argument("--variants", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"])
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each run")
    parser.add_argument("--batch_size", type=int, default=128, help="throughput batch")
    parser.add_argument("--repeats", type=int, default=2, help="alternating runs per side")
    parser.add_argument("--calibration_size", type=int, default=100)
    parser.add_argument("--dataset", type=Path, default=SHARED_IMAGES)
    parser.add_argument("--cache_dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "qaccelx-bench")
    return parser.parse_args()


def _find_benchmark_app() -> str:
    # The openvino wheel installs it beside the interpreter of the environment.
    beside = Path(sys.executable).parent / "benchmark_app"
    found = str(beside) if beside.is_file() else shutil.which("benchmark_app")
    if not found:
        raise RuntimeError("benchmark_app not found: install the openvino wheel in this env")
    return found


def _compare_latency(app: str, xml: Path, variant: str, seconds: float, repeats: int) -> dict:
    tool, reference = [], []
    for _ in range(repeats):
        tool.append(benchmark_latency(xml, variant, seconds)["latency_ms"]["median"])
        result = _run_app(app, xml, variant, "latency", 1, seconds)
        reference.append(float(result["execution_results"]["latency (ms)"]))
    return _row(variant, "latency_ms", tool, reference)


def _compare_throughput(
    app: str, xml: Path, variant: str, batch_size: int, seconds: float, repeats: int
) -> dict:
    tool, reference, requests = [], [], []
    for _ in range(repeats):
        measured = benchmark_throughput(xml, variant, batch_size, seconds)
        tool.append(measured["fps"])
        result = _run_app(app, xml, variant, "throughput", batch_size, seconds)
        reference.append(float(result["execution_results"]["throughput"]))
        setup = result["configuration_setup"]
        requests.append((measured["requests"], setup["number of parallel infer requests"]))
    return {**_row(variant, "throughput_fps", tool, reference), "requests": requests[-1]}


def _run_app(
    app: str, xml: Path, variant: str, hint: str, batch: int, seconds: float
) -> dict[str, Any]:
    # The same static shape, hint and precision hint the tool compiles with; the machine-wide
    # benchmark lock keeps other QAccelX benchmarks off the cores meanwhile.
    report_dir = Path(tempfile.mkdtemp(prefix="parity-"))
    shape = _static_shape(xml, batch)
    command = [app, "-m", str(xml), "-d", "CPU", "-hint", hint, "-shape", shape,
               "-t", str(max(1, round(seconds))), "-report_type", "no_counters", "-json_stats",
               "-report_folder", str(report_dir)]
    if precision_hint(variant):
        command += ["-infer_precision", precision_hint(variant)]
    with benchmark_lock():
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
    report = report_dir / "benchmark_report.json"
    if completed.returncode != 0 or not report.is_file():
        tail = (completed.stdout + completed.stderr).strip().splitlines()[-5:]
        raise RuntimeError(f"benchmark_app failed ({completed.returncode}): {' | '.join(tail)}")
    result = json.loads(report.read_text())
    shutil.rmtree(report_dir, ignore_errors=True)
    return result


def _static_shape(xml: Path, batch: int) -> str:
    shape = ov.Core().read_model(xml).inputs[0].get_partial_shape()
    dims = [batch] + [dim.get_length() for dim in list(shape)[1:]]
    return "[" + ",".join(map(str, dims)) + "]"


def _row(variant: str, metric: str, tool: list[float], reference: list[float]) -> dict:
    tool_median, reference_median = statistics.median(tool), statistics.median(reference)
    ratio = tool_median / reference_median
    return {
        "variant": variant,
        "metric": metric,
        "qaccelx": tool_median,
        "benchmark_app": reference_median,
        "ratio": ratio,
        "within_goal": abs(ratio - 1) <= _GOALS[metric],
        "runs": {"qaccelx": tool, "benchmark_app": reference},
    }


def _print_table(args: argparse.Namespace, rows: list[dict]) -> None:
    machine = describe_machine()
    print(f"\nParity with benchmark_app: {args.model}, random weights, {args.seconds:g} s per "
          f"run, {args.repeats} alternating runs per side, throughput batch {args.batch_size}")
    print(f"Machine: {machine['cpu']}, {machine['cores']} CPUs, load average "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}, OpenVINO "
          f"{machine['versions']['openvino']}")
    header = f"{'variant':<8}{'metric':<16}{'qaccelx':>10}{'benchmark_app':>15}{'ratio':>8}  goal"
    print(header + "\n" + "-" * len(header))
    for row in rows:
        goal = f"±{_GOALS[row['metric']]:.0%} " + ("met" if row["within_goal"] else "MISSED")
        print(f"{row['variant']:<8}{row['metric']:<16}{row['qaccelx']:>10.2f}"
              f"{row['benchmark_app']:>15.2f}{row['ratio']:>8.3f}  {goal}")
    for row in rows:
        runs = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(*row["runs"].values()))
        extra = f"; requests qaccelx/app {row['requests']}" if "requests" in row else ""
        print(f"  {row['variant']} {row['metric']} runs (qaccelx/app): {runs}{extra}")


if __name__ == "__main__":
    main()
