"""The quantize task: NNCF INT8 quantization or weight compression of the FP32 IR."""

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from qaccelx.quantize import QuantizeSettings
from qaccelx.stages import quantize_stage
from qaccelx.store import ArtifactStore, Entry
from tasks._entry import finish_stage

__all__ = ["quantize_task"]


@task(name="quantize", task_run_name="quantize[{model_slug}]", cache_policy=NO_CACHE)
def quantize_task(
    export: Entry,
    calibration: Entry,
    settings: QuantizeSettings,
    cache_dir: Path,
    model_slug: str,
    force: bool = False,
) -> Entry | State:
    """Quantize the model.

    Cache key: FP32 IR digest, calibration set digest, quantization settings, nncf version.
    """
    store = ArtifactStore(cache_dir)
    return finish_stage(quantize_stage(store, export, calibration, settings, force))
