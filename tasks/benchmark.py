"""The benchmark task: latency and throughput of one row."""

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from qaccelx.stages import benchmark_stage
from qaccelx.store import ArtifactStore, Entry
from tasks._entry import log_entry

__all__ = ["benchmark_task"]


@task(
    name="benchmark",
    task_run_name="benchmark[{model_slug}/{variant}]",
    cache_policy=NO_CACHE,
)
def benchmark_task(
    ir: Entry,
    variant: str,
    batch_size: int,
    min_seconds: float,
    cache_dir: Path,
    model_slug: str,
    force: bool = False,
) -> Entry:
    """Benchmark one row.

    Cache key: IR digest, row, batch size, measuring time, machine identity, openvino version.
    """
    store = ArtifactStore(cache_dir)
    return log_entry(benchmark_stage(store, ir, variant, batch_size, min_seconds, force))
