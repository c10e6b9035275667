"""The five verified seed models, with random weights: every one runs end to end, and the three
transformers go through NNCF's transformer path."""

import pytest

from conftest import tiny_run_args
from flows.accelerate import accelerate

pytestmark = pytest.mark.slow

# Model name -> whether the architecture must be detected as a transformer.
SEED_MODELS = {
    "resnet50": False,
    "mobilenetv2_100": False,
    "swin_tiny_patch4_window7_224": True,
    "tnt_s_patch16_224": True,
    "deit_base_patch16_224": True,
}


@pytest.mark.parametrize("model_name", list(SEED_MODELS))
def test_seed_model_runs_end_to_end(model_name, small_dataset, tmp_path):
    args = tiny_run_args(small_dataset, tmp_path / "store", tmp_path, model_name=model_name)
    results = accelerate(**{**args, "batch_size": 4, "calibration_size": 10})

    print(model_name, "speedup", results["speedup"],
          {name: row["latency_ms"]["median"] for name, row in results["variants"].items()})
    assert results["settings"]["transformer"] is SEED_MODELS[model_name]
    assert results["variants"]["int8"]["precision_label"].startswith("i8")
    assert results["variants"]["fp32"]["inference_precision"] == "f32"
