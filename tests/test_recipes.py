"""Per-family quantization recipes: chosen by architecture, overridable, and really applied."""

from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import pytest
from conftest import MOBILENET_DIR

from qaccelx.cli import parse_run_config
from qaccelx.errors import InputError
from qaccelx.quantize import QuantizeSettings, quantize_ir
from qaccelx.recipes import NNCF_DEFAULTS, Recipe, architecture_name, resolve_recipe
from qaccelx.runtime import compile_variant, executed_precision


@pytest.mark.parametrize(
    ("model_name", "family"),
    [
        ("tf_efficientnet_lite0", "depthwise-cnn"),
        ("mobilenetv2_100.ra_in1k", "depthwise-cnn"),
        (f"local-dir:{MOBILENET_DIR}", "depthwise-cnn"),  # read from the folder's config.json
        ("swin_tiny_patch4_window7_224", "swin"),
        ("hf-hub:timm/deit_base_patch16_224.fb_in1k", "deit"),
        ("resnet50", "nncf-defaults"),
        ("tnt_s_patch16_224", "nncf-defaults"),
    ],
)
def test_auto_picks_the_family_of_the_architecture(model_name, family):
    assert resolve_recipe("auto", model_name).name == family


def test_architecture_name_strips_tags_and_sources():
    assert architecture_name("resnet50.a1_in1k") == "resnet50"
    assert architecture_name("hf-hub:timm/tf_efficientnet_lite2.in1k") == "tf_efficientnet_lite2"
    assert architecture_name(f"local-dir:{MOBILENET_DIR}") == "mobilenetv2_100"


def test_overrides_change_only_the_named_fields():
    recipe = resolve_recipe("auto,fast_bias_correction=true,preset=performance", "mobilenetv2_100")

    assert recipe.name == "depthwise-cnn+fast_bias_correction+preset"
    assert recipe.fast_bias_correction is True
    assert recipe.preset == "performance"
    assert recipe.smooth_quant_alpha is None

    swin = resolve_recipe("swin,smooth_quant_alpha=-1,ignored_types=Softmax|MVN", "resnet50")
    assert (swin.smooth_quant_alpha, swin.ignored_types) == (-1.0, ("Softmax", "MVN"))
    assert resolve_recipe("nncf-defaults", "mobilenetv2_100") == NNCF_DEFAULTS


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fastest", "'fastest' is not a recipe: use one of auto, nncf-defaults, depthwise-cnn"),
        ("auto,alpha=0.5", "override 'alpha=0.5' is not understood"),
        ("auto,smooth_quant_alpha=2", "smooth_quant_alpha='2' is not allowed"),
        ("auto,preset=fast", "preset='fast' is not a preset"),
        ("auto,fast_bias_correction=maybe", "'maybe' is not a boolean"),
    ],
)
def test_bad_recipes_are_rejected_with_the_choices(spec, message):
    with pytest.raises(InputError, match=message):
        resolve_recipe(spec, "resnet50")


def test_command_line_rejects_a_bad_recipe_before_any_work(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_run_config(["--quantization_recipe", "fastest"])

    assert exit_info.value.code == 2
    assert "'fastest' is not a recipe" in capsys.readouterr().err


def _integer_layers(xml: Path) -> int:
    # Convolutions and matrix multiplies OpenVINO runs in 8-bit integers.
    compiled = compile_variant(ov.Core(), xml, "int8", "LATENCY")
    layers = executed_precision(compiled)["compute_layers"]
    return layers.get("i8", 0) + layers.get("u8", 0)


def test_a_recipe_reaches_nncf(tmp_path):
    rng = np.random.default_rng(0)
    image = ops.parameter([-1, 8, 16, 16], np.float32, name="image")
    kernel = ops.constant(rng.standard_normal((16, 8, 3, 3)).astype(np.float32))
    features = ops.relu(ops.convolution(image, kernel, [1, 1], [1, 1], [1, 1], [1, 1]))
    flat = ops.reshape(features, ops.constant(np.array([-1, 16 * 16 * 16], np.int64)), False)
    weights = ops.constant(rng.standard_normal((16 * 16 * 16, 10)).astype(np.float32))
    fp32_xml = tmp_path / "fp32.xml"
    ov.save_model(ov.Model([ops.matmul(flat, weights, False, False)], [image], "m"), fp32_xml)
    images = rng.standard_normal((8, 8, 16, 16)).astype(np.float32)
    labels = np.zeros(8, dtype=np.int64)

    def quantize(recipe: Recipe, name: str) -> dict[str, int]:
        settings = QuantizeSettings(False, False, False, 0.01, recipe=recipe)
        meta = quantize_ir(fp32_xml, images, labels, settings, tmp_path / name)
        assert meta["recipe"]["name"] == recipe.name
        return _integer_layers(tmp_path / name)

    keep_matmul = Recipe("keep-matmul", "mixed", False, None, ignored_types=("MatMul",))
    assert quantize(NNCF_DEFAULTS, "defaults.xml") == 2  # the convolution and the MatMul
    assert quantize(keep_matmul, "recipe.xml") == 1  # the MatMul stayed in float
