"""The evaluate task: top-1 and top-5 of one row on the evaluation images."""

from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from qaccelx.data import DatasetIndex, ImageRecord
from qaccelx.stages import evaluate_stage
from qaccelx.store import ArtifactStore, Entry
from tasks._entry import finish_stage

__all__ = ["evaluate_task"]


@task(name="evaluate", task_run_name="evaluate[{model_slug}/{variant}]", cache_policy=NO_CACHE)
def evaluate_task(
    ir: Entry,
    variant: str,
    index: DatasetIndex,
    evaluation: list[ImageRecord],
    data_cfg: dict[str, Any],
    batch_size: int,
    cache_dir: Path,
    model_slug: str,
    force: bool = False,
) -> Entry | State:
    """Evaluate one row.

    Cache key: IR digest, row, evaluation-set manifest, data config (not the batch size).
    """
    store = ArtifactStore(cache_dir)
    stage = evaluate_stage(store, ir, variant, index, evaluation, data_cfg, batch_size, force)
    return finish_stage(stage)
