"""The calibration-set task: preprocessed images for NNCF's statistics."""

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from qaccelx.data import DatasetIndex, ImageRecord
from qaccelx.stages import calibration_stage
from qaccelx.store import ArtifactStore, Entry
from tasks._entry import finish_stage

__all__ = ["calibration_task"]


@task(name="calibration-set", task_run_name="calibration-set[{model_slug}]", cache_policy=NO_CACHE)
def calibration_task(
    index: DatasetIndex,
    calibration: list[ImageRecord],
    data_cfg: dict[str, Any],
    seed: int,
    cache_dir: Path,
    model_slug: str,
    force: bool = False,
) -> Entry | State:
    """Preprocess the calibration images.

    Cache key: dataset manifest, the chosen images' contents, the model's data config, seed.
    """
    store = ArtifactStore(cache_dir)
    return finish_stage(calibration_stage(store, index, calibration, data_cfg, seed, force))
