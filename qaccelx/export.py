"""Convert a torch model to OpenVINO IR: the FP32 baseline and its FP16-compressed twin."""

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import torch
from torch import nn

__all__ = ["FP16_XML", "FP32_XML", "canonicalize_names", "check_export_parity", "export_ir"]

logger = logging.getLogger(__name__)

# File names inside an export entry; the .bin files sit beside them.
FP32_XML = "fp32.xml"
FP16_XML = "fp16.xml"

# A name OpenVINO made up from its process-wide counter, such as Multiply_4859.
_COUNTER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*_\d+")


def export_ir(model: nn.Module, input_size: list[int], out_dir: Path) -> None:
    """Write the FP32 IR (weights kept in FP32) and the FP16-compressed IR into ``out_dir``.

    The batch dimension stays dynamic, so one IR serves batch-1 latency and batched throughput.
    """
    example = torch.zeros(1, *input_size)
    with torch.no_grad():
        ov_model = ov.convert_model(model, example_input=example)
    ov_model.reshape([-1, *input_size])
    canonicalize_names(ov_model, model.pretrained_cfg.get("architecture", type(model).__name__))

    # ov.save_model compresses weights to FP16 by default; the FP32 baseline must not be.
    ov.save_model(ov_model, out_dir / FP32_XML, compress_to_fp16=False)
    ov.save_model(ov_model, out_dir / FP16_XML, compress_to_fp16=True)


def canonicalize_names(ov_model: ov.Model, model_name: str) -> None:
    """Name the model, and every operation OpenVINO named from its counter, by position.

    OpenVINO names an unnamed operation ``<Type>_<n>`` from a process-wide counter (and a
    fused operation inherits such a name), so the same model saved twice in one process gives
    two different XML files. Renamed by position in the graph, an IR's bytes, and so its
    digest in the store, depend on the model alone, and a stage recomputed to the same model
    lets every stage after it be reused. Names from torch (``__module.conv1/...``) stay.

    Args:
        ov_model: The model, renamed in place.
        model_name: The name the IR's ``<net>`` gets.
    """
    ov_model.set_friendly_name(model_name)
    for position, op in enumerate(ov_model.get_ordered_ops()):
        if _COUNTER_NAME.fullmatch(op.get_friendly_name()):
            op.set_friendly_name(f"{op.get_type_name()}_{position}")


def check_export_parity(model: nn.Module, fp32_xml: Path, images: np.ndarray) -> dict[str, Any]:
    """Compare OpenVINO FP32 outputs with torch's on real images.

    Returns:
        ``max_abs_diff`` of the logits and ``top1_agreement`` (fraction of images whose top-1
        class matches).
    """
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(images)).numpy()
    compiled = ov.Core().compile_model(fp32_xml, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ov_logits = compiled(images)[0]

    agreement = float(np.mean(torch_logits.argmax(1) == ov_logits.argmax(1)))
    return {
        "images": int(len(images)),
        "max_abs_diff": float(np.abs(torch_logits - ov_logits).max()),
        "top1_agreement": agreement,
    }
