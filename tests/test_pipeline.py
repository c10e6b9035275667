"""The flow end to end on a tiny timm model: real export, NNCF, OpenVINO and Prefect."""

import json

import openvino as ov

from conftest import tiny_run_args
from flows.accelerate import accelerate


def test_tiny_model_runs_end_to_end(small_dataset, cache_dir, tmp_path):
    results = accelerate(**tiny_run_args(small_dataset, cache_dir, tmp_path))

    # A bf16 row wherever OpenVINO computes BF16 natively (this CPU, for instance).
    native_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    expected = {"fp32", "fp16", "int8"} | ({"bf16"} if native_bf16 else set())
    assert set(results["variants"]) == expected
    if native_bf16:
        assert results["variants"]["bf16"]["precision_label"] == "bf16"
    assert results["agreement"]["int8"]["images"] == 40  # image-by-image against fp32
    assert results["agreement"]["int8"]["vs"] == "fp32"
    assert results["calibration_images"] == 20
    assert all(row["images"] == 40 for row in results["variants"].values())
    assert results["variants"]["fp32"]["inference_precision"] == "f32"
    assert "i8" in results["variants"]["int8"]["precision_label"]
    assert results["variants"]["fp32"]["top1"] is None  # random weights: no accuracy claimed
    assert results["speedup"] > 0
    written = json.loads((tmp_path / "out" / "test_resnet" / "results.json").read_text())
    assert written["speedup"] == results["speedup"]
    assert (tmp_path / "out" / "test_resnet" / "int8.xml").is_file()
    assert (tmp_path / "out" / "test_resnet" / "int8.bin").stat().st_size > 0
