"""Build the IRs the benchmark scripts time, through the project's own cached stages.

Exports and quantizes with random weights (speed does not depend on the weights), calibrating
on real images, and keeps everything in one artifact store so a second run reuses it.
"""

import dataclasses
import logging
from pathlib import Path

from qaccelx.data import index_dataset, split_calibration
from qaccelx.models import resolve_model_spec
from qaccelx.quantize import QuantizeSettings
from qaccelx.recipes import resolve_recipe
from qaccelx.stages import calibration_stage, export_stage, quantize_stage, variant_xml
from qaccelx.store import ArtifactStore

__all__ = ["ModelIrs", "SHARED_IMAGES", "build_irs"]

logger = logging.getLogger(__name__)

# The shared ImageNet sample beside the repository (see ../shared/data/README.md).
SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


@dataclasses.dataclass(frozen=True)
class ModelIrs:
    """One model's IRs, by row name."""

    model: str  # timm name
    transformer: bool  # whether NNCF ran in transformer mode
    xml: dict[str, Path]  # row (fp32, int8, int8_nncf) -> IR file


def build_irs(
    model_name: str,
    cache_dir: Path,
    dataset: Path,
    calibration_size: int,
    recipes: dict[str, str],
) -> ModelIrs:
    """Export a model with random weights and quantize it once per named recipe.

    Args:
        model_name: A timm name.
        cache_dir: The artifact store shared by every benchmark run.
        dataset: Images to calibrate on.
        calibration_size: Calibration images.
        recipes: Row name -> ``--quantization_recipe`` value, e.g. ``{"int8": "auto"}``.

    Returns:
        The FP32 IR (row ``fp32``) and one INT8 IR per recipe.
    """
    store = ArtifactStore(cache_dir)
    spec = resolve_model_spec(model_name, random_weights=True)
    export = export_stage(store, spec)
    transformer = bool(export.meta["transformer"])

    index = index_dataset(str(dataset))
    calibration_images, _ = split_calibration(index, calibration_size, seed=0)
    data_cfg = export.meta["data_config"]
    calibration = calibration_stage(store, index, calibration_images, data_cfg, seed=0)

    xml = {"fp32": variant_xml(export, "fp32")}
    for row, recipe_spec in recipes.items():
        settings = QuantizeSettings(
            weight_only=False,
            transformer=transformer,
            accuracy_control=False,
            max_accuracy_drop=0.01,
            recipe=resolve_recipe(recipe_spec, model_name),
        )
        logger.info("%s: quantizing with the %s recipe", model_name, settings.recipe.name)
        xml[row] = variant_xml(quantize_stage(store, export, calibration, settings), "int8")
    return ModelIrs(model_name, transformer, xml)
