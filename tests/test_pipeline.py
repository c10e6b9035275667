"""The flow end to end on a tiny timm model: real export, NNCF, OpenVINO and Prefect."""

import json

from conftest import tiny_run_args
from flows.accelerate import accelerate


def test_tiny_model_runs_end_to_end(small_dataset, cache_dir, tmp_path):
    results = accelerate(**tiny_run_args(small_dataset, cache_dir, tmp_path))

    assert set(results["variants"]) == {"fp32", "fp16", "int8"}
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
