"""Real weights on the shared ImageNet sample: the accuracy figures users will be shown.

Reference FP32 top-1 on all 1000 images (../shared/data/README.md): EfficientNet-Lite0 88.9 %,
MobileNetV2 (coral) 89.3 %. Evaluation here covers the 700 images left after 300 calibration
images, so FP32 top-1 may move by a point or so; the bound below is 2 points.
"""

import pytest

from conftest import IMAGENET_SAMPLE, MOBILENET_DIR
from flows.accelerate import accelerate

pytestmark = pytest.mark.slow

# Largest distance allowed between our FP32 top-1 and the reference figure, in points.
FP32_TOLERANCE = 2.0

# Largest INT8 accuracy loss the product promises on these models, in points.
MAX_INT8_LOSS = 1.0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for the module, so the lite0 runs share export and calibration."""
    return tmp_path_factory.mktemp("e2e-store")


def run_real(model_name: str, store, tmp_path, **overrides) -> dict:
    args = {
        "model_name": model_name,
        "dataset_path": str(IMAGENET_SAMPLE),
        "batch_size": 32,
        "benchmark_seconds": 2.0,
        "cache_dir": str(store),
        "output_dir": str(tmp_path / "out"),
    }
    results = accelerate(**{**args, **overrides})
    print(model_name, overrides, {k: v["top1"] for k, v in results["variants"].items()},
          "speedup", results["speedup"])
    return results


def test_efficientnet_lite0_int8(store, tmp_path):
    results = run_real("tf_efficientnet_lite0", store, tmp_path)

    assert results["calibration_images"] == 300
    assert results["evaluation_images"] == 700
    assert results["variants"]["fp32"]["top1"] == pytest.approx(88.9, abs=FP32_TOLERANCE)
    assert results["accuracy_loss"] <= MAX_INT8_LOSS
    assert results["variants"]["int8"]["precision_label"].startswith("i8")


def test_mobilenetv2_local_dir_int8(store, tmp_path):
    results = run_real(f"local-dir:{MOBILENET_DIR}", store, tmp_path)

    assert results["variants"]["fp32"]["top1"] == pytest.approx(89.3, abs=FP32_TOLERANCE)
    assert results["accuracy_loss"] <= MAX_INT8_LOSS


def test_efficientnet_lite0_accuracy_control(store, tmp_path):
    results = run_real("tf_efficientnet_lite0", store, tmp_path, accuracy_control=True)

    stages = {stage["name"]: stage["status"] for stage in results["stages"]}
    assert stages["export"] == "cached"  # the plain INT8 run above made it
    assert stages["quantize"] == "computed"
    assert results["accuracy_loss"] <= MAX_INT8_LOSS


def test_efficientnet_lite0_weight_only(store, tmp_path):
    results = run_real("tf_efficientnet_lite0", store, tmp_path, weight_only=True)

    assert results["optimized"] == "int8_weights"
    # Weights are rounded to INT8 but activations stay float: accuracy barely moves.
    assert results["accuracy_loss"] <= MAX_INT8_LOSS
    assert not results["variants"]["int8_weights"]["precision_label"].startswith("i8")
