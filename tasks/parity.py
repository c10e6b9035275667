"""The debug-only parity check: does the exported FP32 IR compute what torch computes?"""

from typing import Any

import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from qaccelx.data import DatasetIndex, ImageRecord, iterate_batches
from qaccelx.export import FP32_XML, check_export_parity
from qaccelx.models import ModelSpec, create_model
from qaccelx.store import Entry

__all__ = ["parity_task"]

# Enough real images to see a systematic difference, few enough to run torch eagerly in seconds.
_PARITY_IMAGES = 16


@task(name="export-parity", task_run_name="export-parity[{spec.slug}]", cache_policy=NO_CACHE)
def parity_task(
    spec: ModelSpec,
    export: Entry,
    index: DatasetIndex,
    evaluation: list[ImageRecord],
) -> dict[str, Any]:
    """Compare OpenVINO FP32 logits with torch's on real evaluation images. Not cached."""
    skipped: list[str] = []
    batches = iterate_batches(
        index.root, evaluation[:_PARITY_IMAGES], export.meta["data_config"], _PARITY_IMAGES, skipped
    )
    images = np.concatenate([batch for batch, _ in batches])
    parity = check_export_parity(create_model(spec), export.file(FP32_XML), images)
    get_run_logger().info(
        "Export parity on %d images: max |torch - OpenVINO| = %.2e, top-1 agreement %.0f %%",
        parity["images"],
        parity["max_abs_diff"],
        parity["top1_agreement"] * 100,
    )
    return parity
