"""Quantize an OpenVINO FP32 IR with NNCF: INT8, SmoothQuant, accuracy control, weight-only."""

import dataclasses
import logging
from pathlib import Path
from typing import Any

import nncf
import numpy as np
import openvino as ov

from qaccelx.export import canonicalize_names
from qaccelx.recipes import NNCF_DEFAULTS, Recipe

__all__ = [
    "QuantizeSettings",
    "describe_accuracy_target",
    "judge_accuracy_target",
    "optimized_variant",
    "quantize_ir",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class QuantizeSettings:
    """How the FP32 model becomes the optimized one; every field changes the result."""

    weight_only: bool  # INT8 weights only (nncf.compress_weights); activations stay float
    transformer: bool  # nncf.ModelType.TRANSFORMER: SmoothQuant and transformer-aware scopes
    accuracy_control: bool  # nncf.quantize_with_accuracy_control
    max_accuracy_drop: float  # absolute top-1 fraction allowed to be lost with accuracy control
    recipe: Recipe = NNCF_DEFAULTS  # per-family NNCF settings (qaccelx.recipes)


def optimized_variant(settings: QuantizeSettings) -> str:
    """The name of the optimized row: ``int8`` or ``int8_weights`` (weight-only)."""
    return "int8_weights" if settings.weight_only else "int8"


def quantize_ir(
    fp32_xml: Path,
    calibration_images: np.ndarray,
    calibration_labels: np.ndarray,
    settings: QuantizeSettings,
    out_xml: Path,
) -> dict[str, Any]:
    """Quantize the FP32 IR and save the optimized IR to ``out_xml``.

    Calibration images double as the validation set of accuracy control, so the evaluation
    images are never seen while the model is being made.

    Returns:
        What NNCF was asked to do, for the manifest and the report; with accuracy control,
        also the top-1 drop reached on its validation images (``validation``).
    """
    model = ov.Core().read_model(fp32_xml)
    samples = [
        (calibration_images[i : i + 1], int(calibration_labels[i]))
        for i in range(len(calibration_images))
    ]
    calibration = nncf.Dataset(samples, _take_image)
    model_type = nncf.ModelType.TRANSFORMER if settings.transformer else None

    if settings.weight_only:
        logger.info("Compressing weights to INT8 (activations stay float)")
        quantized = nncf.compress_weights(model)
    elif settings.accuracy_control:
        logger.info(
            "Quantizing to INT8 with accuracy control (max drop %.3f) on %d images",
            settings.max_accuracy_drop,
            len(samples),
        )
        quantized = nncf.quantize_with_accuracy_control(
            model,
            calibration_dataset=calibration,
            validation_dataset=nncf.Dataset(samples),
            validation_fn=_validate_top1,
            max_drop=settings.max_accuracy_drop,
            drop_type=nncf.DropType.ABSOLUTE,
            subset_size=len(samples),
            model_type=model_type,
            **_recipe_arguments(settings.recipe, "advanced_quantization_parameters"),
        )
    else:
        logger.info(
            "Quantizing to INT8 on %d calibration images with the %s recipe",
            len(samples),
            settings.recipe.name,
        )
        quantized = nncf.quantize(
            model,
            calibration,
            subset_size=len(samples),
            model_type=model_type,
            **_recipe_arguments(settings.recipe, "advanced_parameters"),
        )

    canonicalize_names(quantized, model.get_friendly_name())
    ov.save_model(quantized, out_xml, compress_to_fp16=False)
    meta = {
        "variant": optimized_variant(settings),
        "model_type": "transformer" if settings.transformer else "default",
        "calibration_images": len(samples),
    }
    if not settings.weight_only:
        meta["recipe"] = dataclasses.asdict(settings.recipe)
    if settings.accuracy_control:
        meta["validation"] = _measure_validation_drop(model, quantized, samples)
    return meta


def judge_accuracy_target(
    baseline_top1: float,
    optimized_top1: float,
    max_accuracy_drop: float,
    validation: dict[str, Any] | None,
) -> dict[str, Any]:
    """Whether the optimized row kept its top-1 within the allowed drop on the evaluation set.

    Accuracy control can only steer by its validation images (the calibration set); what the
    user asked for is judged on the held-out evaluation images that the report shows.

    Args:
        baseline_top1: Baseline top-1 on the evaluation images, percent.
        optimized_top1: Optimized top-1 on the same images, percent.
        max_accuracy_drop: The allowed absolute drop, a fraction (0.01 is one point).
        validation: The drop accuracy control reached on its own images, if it ran.

    Returns:
        ``max_drop_points``, ``drop_points``, ``met`` and, with accuracy control,
        ``validation``.
    """
    drop_points = round(baseline_top1 - optimized_top1, 2)
    max_drop_points = round(max_accuracy_drop * 100, 2)
    target = {"max_drop_points": max_drop_points, "drop_points": drop_points}
    target["met"] = drop_points <= max_drop_points
    if validation is not None:
        target["validation"] = validation
    return target


def describe_accuracy_target(target: dict[str, Any]) -> str:
    """One line on the accuracy target: met, or missed and by how much."""
    verdict = "met" if target["met"] else "MISSED"
    line = (
        f"accuracy target {verdict}: top-1 drop {target['drop_points']:.2f} points on the "
        f"evaluation images, {target['max_drop_points']:.2f} allowed (--max_accuracy_drop)"
    )
    validation = target.get("validation")
    if validation:
        line += (
            f"; accuracy control reached {validation['drop_points']:.2f} points on its "
            f"{validation['images']} calibration images"
        )
    if not target["met"]:
        line += "; the optimized model is the best one found (more calibration images help)"
    return line


def _recipe_arguments(recipe: Recipe, advanced_keyword: str) -> dict[str, Any]:
    # Only what the recipe sets is passed, so everything else stays NNCF's own default.
    arguments: dict[str, Any] = {"fast_bias_correction": recipe.fast_bias_correction}
    if recipe.preset is not None:
        arguments["preset"] = nncf.QuantizationPreset(recipe.preset)
    if recipe.ignored_types or recipe.ignored_patterns:
        # validate=False: a pattern for a layer a model does not have is not an error.
        arguments["ignored_scope"] = nncf.IgnoredScope(
            types=list(recipe.ignored_types),
            patterns=list(recipe.ignored_patterns),
            validate=False,
        )
    if recipe.smooth_quant_alpha is not None:
        alphas = nncf.AdvancedSmoothQuantParameters(matmul=recipe.smooth_quant_alpha)
        arguments[advanced_keyword] = nncf.AdvancedQuantizationParameters(
            smooth_quant_alphas=alphas
        )
    return arguments


def _take_image(sample: tuple[np.ndarray, int]) -> np.ndarray:
    # NNCF only needs model inputs to collect statistics; the label stays behind.
    return sample[0]


def _measure_validation_drop(
    fp32_model: ov.Model,
    int8_model: ov.Model,
    samples: list[tuple[np.ndarray, int]],
) -> dict[str, Any]:
    # NNCF does not return the drop it reached; measure it on its own validation images,
    # compiled as NNCF compiles them.
    core = ov.Core()
    fp32_top1 = _validate_top1(core.compile_model(fp32_model, "CPU"), samples)
    int8_top1 = _validate_top1(core.compile_model(int8_model, "CPU"), samples)
    return {
        "images": len(samples),
        "fp32_top1": round(fp32_top1 * 100, 2),
        "int8_top1": round(int8_top1 * 100, 2),
        "drop_points": round((fp32_top1 - int8_top1) * 100, 2),
    }


def _validate_top1(compiled: ov.CompiledModel, samples: Any) -> float:
    output = compiled.outputs[0]
    hits = [int(np.argmax(compiled(image)[output])) == label for image, label in samples]
    return float(np.mean(hits))
