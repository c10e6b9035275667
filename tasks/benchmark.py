"""The benchmark tasks: batch-1 latency and batched throughput of one row, stored apart."""

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from qaccelx.stages import latency_stage, throughput_stage
from qaccelx.store import ArtifactStore, Entry
from tasks._entry import finish_stage

__all__ = ["latency_task", "throughput_task"]


@task(
    name="benchmark-latency",
    task_run_name="benchmark-latency[{model_slug}/{variant}]",
    cache_policy=NO_CACHE,
)
def latency_task(
    ir: Entry,
    variant: str,
    min_seconds: float,
    cache_dir: Path,
    model_slug: str,
    force: bool = False,
) -> Entry | State:
    """Measure one row's batch-1 latency.

    Cache key: IR digest, row, measuring time, machine identity, openvino version; not the
    batch size.
    """
    store = ArtifactStore(cache_dir)
    return finish_stage(latency_stage(store, ir, variant, min_seconds, force))


@task(
    name="benchmark-throughput",
    task_run_name="benchmark-throughput[{model_slug}/{variant}]",
    cache_policy=NO_CACHE,
)
def throughput_task(
    ir: Entry,
    variant: str,
    batch_size: int,
    min_seconds: float,
    cache_dir: Path,
    model_slug: str,
    force: bool = False,
) -> Entry | State:
    """Measure one row's throughput at the batch size.

    Cache key: IR digest, row, batch size, measuring time, machine identity, openvino version.
    """
    store = ArtifactStore(cache_dir)
    return finish_stage(throughput_stage(store, ir, variant, batch_size, min_seconds, force))
