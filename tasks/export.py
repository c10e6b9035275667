"""The export task: timm model to OpenVINO FP32 and FP16 IR."""

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from qaccelx.models import ModelSpec
from qaccelx.stages import export_stage
from qaccelx.store import ArtifactStore, Entry
from tasks._entry import finish_stage

__all__ = ["export_task"]


@task(name="export", task_run_name="export[{spec.slug}]", cache_policy=NO_CACHE)
def export_task(spec: ModelSpec, cache_dir: Path, force: bool = False) -> Entry | State:
    """Export the model to IR.

    Cache key: model name, weights digest, torch/timm/openvino versions.
    """
    return finish_stage(export_stage(ArtifactStore(cache_dir), spec, force))
