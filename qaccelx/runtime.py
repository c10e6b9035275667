"""Compile IRs for a table row and read back what OpenVINO really executes."""

import collections
import logging
from pathlib import Path

import openvino as ov

__all__ = [
    "compile_variant",
    "executed_precision",
    "float_rows",
    "has_native_bf16",
    "precision_hint",
]

logger = logging.getLogger(__name__)

# Layer types whose precision says what the arithmetic ran in.
_COMPUTE_LAYERS = ("Convolution", "FullyConnected", "MatMul", "GroupConvolution", "Deconvolution")

# OpenVINO's CPU plugin runs "FP32" models in BF16 where the CPU has it natively, so the FP32
# row forces f32 and the BF16 row (the FP32 IR again) asks for bf16 by name; the other rows run
# as a user would run them and report what executed.
_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}


def precision_hint(variant: str) -> str | None:
    """The INFERENCE_PRECISION_HINT a row forces, or None for OpenVINO's default."""
    return _PRECISION_HINTS.get(variant)


def has_native_bf16(core: ov.Core | None = None) -> bool:
    """Whether OpenVINO's CPU plugin computes in BF16 natively here (AVX512-BF16 or AMX)."""
    core = core or ov.Core()
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def float_rows(baseline_precision: str, core: ov.Core | None = None) -> list[str]:
    """The unquantized rows of the table for a baseline, baseline first.

    An fp32 baseline also shows fp16 (as the seed did) and, where the CPU computes BF16
    natively, a bf16 row: the speed OpenVINO gives an FP32 model by default on such a CPU.

    Args:
        baseline_precision: ``fp32`` or ``fp16``.
        core: The OpenVINO core to ask about the CPU.
    """
    if baseline_precision != "fp32":
        return [baseline_precision]
    return ["fp32", "bf16", "fp16"] if has_native_bf16(core) else ["fp32", "fp16"]


def compile_variant(
    core: ov.Core,
    xml_path: Path,
    variant: str,
    performance_hint: str,
    batch: int | None = None,
) -> ov.CompiledModel:
    """Compile an IR for a row: its precision hint, a performance hint, a static batch.

    Args:
        core: The OpenVINO core.
        xml_path: The IR.
        variant: The row name (fp32, bf16, fp16, int8, int8_weights).
        performance_hint: ``LATENCY`` or ``THROUGHPUT``.
        batch: Fix the batch dimension (static shapes run faster); None keeps it dynamic.
    """
    model = core.read_model(xml_path)
    if batch is not None:
        shape = model.inputs[0].get_partial_shape()
        shape[0] = batch
        model.reshape(shape)

    properties = {"PERFORMANCE_HINT": performance_hint}
    if precision_hint(variant):
        properties["INFERENCE_PRECISION_HINT"] = precision_hint(variant)
    return core.compile_model(model, "CPU", properties)


def executed_precision(compiled: ov.CompiledModel) -> dict[str, object]:
    """What a compiled model runs in, read from the compiled model, not from what was asked.

    Returns:
        ``inference_precision`` (the float precision: f32, bf16 or f16), ``label`` (a short
        name such as ``i8+bf16``) and ``compute_layers`` (precision -> count of convolution and
        matrix-multiply layers), as OpenVINO's runtime model reports them.
    """
    float_precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    counts: collections.Counter[str] = collections.Counter()
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) in _COMPUTE_LAYERS:
            counts[info["runtimePrecision"].astype(str)] += 1

    integer_layers = sum(n for precision, n in counts.items() if precision in ("u8", "i8"))
    label = f"i8+{float_precision}" if integer_layers else float_precision
    return {"inference_precision": float_precision, "label": label, "compute_layers": dict(counts)}
