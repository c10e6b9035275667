"""Top-1 and top-5 accuracy of an IR on the evaluation images."""

import logging
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from qaccelx.data import ImageRecord, iterate_batches
from qaccelx.errors import InputError
from qaccelx.progress import StageProgress
from qaccelx.runtime import compile_variant, executed_precision

__all__ = ["PREDICTIONS_FILE", "evaluate_ir"]

logger = logging.getLogger(__name__)

# Per-image top-5 classes and labels, kept so rows can be compared image by image.
PREDICTIONS_FILE = "predictions.npz"


def evaluate_ir(
    xml_path: Path,
    variant: str,
    root: str,
    records: list[ImageRecord],
    data_cfg: dict[str, Any],
    batch_size: int,
    out_dir: Path,
) -> dict[str, Any]:
    """Classify every evaluation image with the IR compiled as its row runs it.

    Writes the per-image top-5 predictions to ``out_dir/predictions.npz``.

    Returns:
        ``top1`` and ``top5`` (percent), ``images`` evaluated, ``skipped`` (unreadable images),
        and the executed precision.
    """
    # One stream using every core, called synchronously. OpenVINO 2026.4's CPU plugin returns
    # wrong logits for NNCF weight-compressed models in single-thread streams (the THROUGHPUT
    # hint on small or dynamic batches), and accuracy must not depend on how cores are split.
    # Synchronous calls also need no Python callback, which would have to take the GIL from
    # OpenVINO's threads; the data loader's workers decode the next batch meanwhile.
    compiled = compile_variant(ov.Core(), xml_path, variant, "LATENCY")
    request = compiled.create_infer_request()

    top5_batches, labels, skipped = [], [], []
    batches = iterate_batches(root, records, data_cfg, batch_size, skipped)
    with StageProgress(len(records), f"evaluate {variant}") as progress:
        for images, batch_labels in batches:
            request.infer(images)
            top5_batches.append(_top5(request))
            labels.append(batch_labels)
            progress.update(len(images))
    if not labels:
        raise InputError(
            f"none of the {len(records)} evaluation images under {root} could be read (see "
            "the skipped files logged above): replace them with readable images"
        )

    top5 = np.concatenate(top5_batches)
    labels_all = np.concatenate(labels)
    np.savez(out_dir / PREDICTIONS_FILE, top5=top5, labels=labels_all)
    return {
        "top1": float(np.mean(top5[:, 0] == labels_all) * 100),
        "top5": float(np.mean((top5 == labels_all[:, None]).any(1)) * 100),
        "images": int(len(labels_all)),
        "skipped": skipped,
        **executed_precision(compiled),
    }


def _top5(request: ov.InferRequest) -> np.ndarray:
    logits = request.get_output_tensor(0).data
    return np.argsort(-logits, axis=1)[:, :5].astype(np.int32)
