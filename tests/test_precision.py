"""Precision truth and timing stability, on a small real OpenVINO model compiled on this CPU."""

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest

from qaccelx.benchmark import benchmark_latency, benchmark_throughput, describe_machine
from qaccelx.report import build_results, format_report, results_table_rows
from qaccelx.runtime import compile_variant, executed_precision, float_rows

# Decided from OpenVINO itself, not from the code under test: BF16 is native on this CPU.
NATIVE_BF16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.fixture(scope="module")
def conv_ir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real FP32 IR with a convolution and a matrix multiply, as an exported classifier has."""
    rng = np.random.default_rng(0)
    image = ops.parameter([1, 8, 16, 16], np.float32, name="image")
    kernel = ops.constant(rng.standard_normal((16, 8, 3, 3)).astype(np.float32))
    features = ops.relu(ops.convolution(image, kernel, [1, 1], [1, 1], [1, 1], [1, 1]))
    flat = ops.reshape(features, ops.constant(np.array([1, -1], np.int64)), False)
    weights = ops.constant(rng.standard_normal((16 * 16 * 16, 10)).astype(np.float32))
    logits = ops.matmul(flat, weights, False, False)
    path = tmp_path_factory.mktemp("ir") / "conv.xml"
    ov.save_model(ov.Model([logits], [image], "conv"), path, compress_to_fp16=False)
    return path


def test_forced_f32_and_default_report_what_executed(conv_ir):
    core = ov.Core()
    forced = executed_precision(compile_variant(core, conv_ir, "fp32", "LATENCY"))
    default = executed_precision(compile_variant(core, conv_ir, "int8", "LATENCY"))

    assert forced["label"] == "f32"
    assert forced["compute_layers"] == {"f32": 2}
    if NATIVE_BF16:
        # OpenVINO quietly runs the same FP32 IR in BF16 when nothing forces f32.
        assert default["label"] == "bf16"
        assert default["compute_layers"] == {"bf16": 2}
    else:
        assert default["label"] == forced["label"] == "f32"


def test_bf16_row_exists_exactly_where_the_cpu_has_bf16(conv_ir):
    expected = ["fp32", "bf16", "fp16"] if NATIVE_BF16 else ["fp32", "fp16"]
    assert float_rows("fp32") == expected
    assert float_rows("fp16") == ["fp16"]

    if NATIVE_BF16:
        bf16 = executed_precision(compile_variant(ov.Core(), conv_ir, "bf16", "LATENCY"))
        assert bf16["label"] == "bf16"


def test_latency_reports_spread_and_the_executed_precision(conv_ir):
    result = benchmark_latency(conv_ir, "fp32", min_seconds=0.1)

    latency = result["latency_ms"]
    assert latency["iterations"] >= 50
    assert latency["min"] <= latency["q1"] <= latency["median"] <= latency["q3"] <= latency["max"]
    assert latency["spread"] == pytest.approx((latency["q3"] - latency["q1"]) / latency["median"])
    assert latency["noisy"] == (latency["spread"] > 0.10)
    assert (result["requested_precision"], result["label"]) == ("f32", "f32")
    assert result["streams"] >= 1 and result["threads"] >= 1


def test_throughput_runs_whole_rounds_of_requests(conv_ir):
    result = benchmark_throughput(conv_ir, "fp32", batch_size=2, min_seconds=0.1)

    assert result["batches"] % result["requests"] == 0
    assert result["batches"] >= 3 * result["requests"]
    assert result["fps"] == pytest.approx(result["batches"] * 2 / result["seconds"])
    assert result["spread"] is not None and result["spread"] >= 0
    assert result["label"] == "f32"


def test_machine_identity_names_the_flags_openvino_uses():
    machine = describe_machine()
    flags = set(Path("/proc/cpuinfo").read_text().split())

    assert machine["features"]["avx512_bf16"] == ("avx512_bf16" in flags)
    assert machine["features"]["vnni"] == bool({"avx512_vnni", "avx_vnni"} & flags)
    assert ("BF16" in machine["openvino_capabilities"]) == NATIVE_BF16
    assert 1 <= machine["threads_available"] <= machine["cores"]
    assert machine["versions"]["openvino"]


def _bench(label: str, median: float, spread: float) -> dict:
    return {
        "latency_ms": {"median": median, "p90": median, "min": median, "max": median,
                       "iterations": 50, "spread": spread},
        "throughput_fps": 1000 / median,
        "throughput": {"batch_size": 8, "spread": spread},
        "inference_precision": label.split("+")[-1],
        "label": label,
        "compute_layers": {},
        "noisy": spread > 0.10,
    }


def test_table_names_fp16_executed_as_bf16_and_marks_noisy_figures():
    evaluation = {"top1": 0.0, "top5": 0.0, "images": 10, "skipped": []}
    results = build_results(
        "m", False, "fp32", "int8",
        {"fp32": _bench("f32", 4.0, 0.02), "fp16": _bench("bf16", 2.345, 0.02),
         "int8": _bench("i8+bf16", 1.23456, 0.4)},
        {name: evaluation for name in ("fp32", "fp16", "int8")},
        {},
    )
    rows = {row["variant"]: row for row in results_table_rows(results)}

    assert rows["fp16"]["executed"] == "bf16 (not f16)"
    assert rows["int8"]["executed"] == "i8+bf16"
    assert rows["fp16"]["latency_median_ms"] == "2.35"
    assert rows["int8"]["latency_median_ms"] == "~1.2 noisy"
    assert rows["int8"]["speedup_vs_fp32"] == f"~{4.0 / 1.23456:.1f}x"  # noisy: one decimal
    assert rows["fp16"]["speedup_vs_fp32"] == f"{4.0 / 2.345:.2f}x"
    assert results["speedup_baseline"] == {"variant": "fp32", "executed": "f32"}
    report = format_report(results)
    assert "the fp16 row executed as bf16, not f16" in report
    assert "Noisy: timings of int8" in report
