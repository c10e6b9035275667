"""The pipeline's stages: each a function from its inputs to one store entry.

A stage names exactly what its result depends on (the ``inputs`` it hashes into its key) and
how to compute it. The Prefect tasks in ``tasks/`` are thin wrappers around these functions,
which also run, and are tested, without Prefect.
"""

import dataclasses
import logging
from pathlib import Path
from typing import Any

from qaccelx.benchmark import benchmark_latency, benchmark_throughput, describe_machine
from qaccelx.data import (
    CALIBRATION_FILE,
    DatasetIndex,
    ImageRecord,
    load_calibration_set,
    manifest_digest,
    save_calibration_set,
)
from qaccelx.evaluate import evaluate_ir
from qaccelx.export import FP16_XML, FP32_XML, export_ir
from qaccelx.models import ModelSpec, create_model, detect_transformer, resolve_data_config
from qaccelx.quantize import QuantizeSettings, quantize_ir
from qaccelx.store import ArtifactStore, Entry, digest_file
from qaccelx.versions import library_versions

__all__ = [
    "OPTIMIZED_XML",
    "calibration_stage",
    "evaluate_stage",
    "export_stage",
    "latency_stage",
    "quantize_stage",
    "throughput_stage",
    "variant_xml",
]

logger = logging.getLogger(__name__)

# The optimized IR's file name inside a quantize entry.
OPTIMIZED_XML = "optimized.xml"


def export_stage(store: ArtifactStore, spec: ModelSpec, force: bool = False) -> Entry:
    """Export the model to FP32 and FP16 IR; keyed by model, weights and converter versions."""
    inputs = {
        "model": spec.name,
        "weights": spec.weights_digest,
        "versions": library_versions("torch", "timm", "openvino"),
    }

    def compute(out_dir: Path) -> dict[str, Any]:
        logger.info(
            "Building %s (%s weights) and converting it to OpenVINO", spec.name, spec.weights
        )
        model = create_model(spec)
        data_cfg = resolve_data_config(model)
        export_ir(model, data_cfg["input_size"], out_dir)
        return {
            "data_config": data_cfg,
            "transformer": detect_transformer(model),
            "parameters": sum(p.numel() for p in model.parameters()),
        }

    return store.fetch_or_compute("export", inputs, compute, force)


def calibration_stage(
    store: ArtifactStore,
    index: DatasetIndex,
    calibration: list[ImageRecord],
    data_cfg: dict[str, Any],
    seed: int,
    force: bool = False,
) -> Entry:
    """Preprocess the calibration images; keyed by the dataset, the chosen images' contents,
    the model's preprocessing and the seed."""
    root = Path(index.root)
    inputs = {
        "dataset": manifest_digest(index.train or index.val),
        "images": [(r.path, digest_file(root / r.path)) for r in calibration],
        "data_config": data_cfg,
        "seed": seed,
        "versions": library_versions("timm", "torch", "torchvision", "pillow"),
    }

    def compute(out_dir: Path) -> dict[str, Any]:
        logger.info("Preprocessing %d calibration images", len(calibration))
        return save_calibration_set(index.root, calibration, data_cfg, out_dir)

    return store.fetch_or_compute("calibration", inputs, compute, force)


def quantize_stage(
    store: ArtifactStore,
    export: Entry,
    calibration: Entry,
    settings: QuantizeSettings,
    force: bool = False,
) -> Entry:
    """Quantize the FP32 IR with NNCF; keyed by the IR, the calibration set and the settings."""
    inputs = {
        "fp32_ir": export.digest,
        "calibration": calibration.digest,
        "settings": _quantize_key_settings(settings),
        "versions": library_versions("nncf", "openvino"),
    }

    def compute(out_dir: Path) -> dict[str, Any]:
        images, labels = load_calibration_set(calibration.file(CALIBRATION_FILE))
        return quantize_ir(export.file(FP32_XML), images, labels, settings, out_dir / OPTIMIZED_XML)

    return store.fetch_or_compute("quantize", inputs, compute, force)


def latency_stage(
    store: ArtifactStore,
    ir: Entry,
    variant: str,
    min_seconds: float,
    force: bool = False,
) -> Entry:
    """Time one row at batch 1; keyed by the IR, the row, the measuring time, the machine and
    OpenVINO. Not by the batch size: latency is always measured at batch 1."""
    machine = describe_machine()
    inputs = {
        "ir": ir.digest,
        "variant": variant,
        "min_seconds": min_seconds,
        "machine": _machine_identity(machine),
        "versions": library_versions("openvino"),
    }

    def compute(out_dir: Path) -> dict[str, Any]:
        logger.info("Measuring %s latency for at least %.1f s", variant, min_seconds)
        xml = variant_xml(ir, variant)
        return {**benchmark_latency(xml, variant, min_seconds), "machine": machine}

    return store.fetch_or_compute("benchmark-latency", inputs, compute, force)


def throughput_stage(
    store: ArtifactStore,
    ir: Entry,
    variant: str,
    batch_size: int,
    min_seconds: float,
    force: bool = False,
) -> Entry:
    """Time one row's batched throughput; keyed by the IR, the row, the batch size, the
    measuring time, the machine and OpenVINO."""
    machine = describe_machine()
    inputs = {
        "ir": ir.digest,
        "variant": variant,
        "batch_size": batch_size,
        "min_seconds": min_seconds,
        "machine": _machine_identity(machine),
        "versions": library_versions("openvino"),
    }

    def compute(out_dir: Path) -> dict[str, Any]:
        logger.info(
            "Measuring %s throughput at batch %d for at least %.1f s",
            variant,
            batch_size,
            min_seconds,
        )
        xml = variant_xml(ir, variant)
        return {**benchmark_throughput(xml, variant, batch_size, min_seconds), "machine": machine}

    return store.fetch_or_compute("benchmark-throughput", inputs, compute, force)


def evaluate_stage(
    store: ArtifactStore,
    ir: Entry,
    variant: str,
    index: DatasetIndex,
    evaluation: list[ImageRecord],
    data_cfg: dict[str, Any],
    batch_size: int,
    force: bool = False,
) -> Entry:
    """Top-1/top-5 of one row; keyed by the IR, the row, the evaluation images and the
    preprocessing. The batch size only changes how fast it runs, so it is not in the key."""
    inputs = {
        "ir": ir.digest,
        "variant": variant,
        "images": manifest_digest(evaluation),
        "data_config": data_cfg,
        "versions": library_versions("openvino", "timm", "torch", "torchvision", "pillow"),
    }

    def compute(out_dir: Path) -> dict[str, Any]:
        logger.info("Evaluating %s on %d images", variant, len(evaluation))
        xml = variant_xml(ir, variant)
        return evaluate_ir(xml, variant, index.root, evaluation, data_cfg, batch_size, out_dir)

    return store.fetch_or_compute("evaluate", inputs, compute, force)


def _quantize_key_settings(settings: QuantizeSettings) -> dict[str, Any]:
    # Only the settings the chosen algorithm reads: weight compression ignores the model type
    # and accuracy control, and the allowed drop means nothing without accuracy control.
    if settings.weight_only:
        return {"weight_only": True}
    key_settings = {"weight_only": False, "transformer": settings.transformer}
    # The recipe's settings, not its name: two names for the same settings share one entry.
    key_settings["recipe"] = dataclasses.asdict(dataclasses.replace(settings.recipe, name=""))
    key_settings["accuracy_control"] = settings.accuracy_control
    if settings.accuracy_control:
        key_settings["max_accuracy_drop"] = settings.max_accuracy_drop
    return key_settings


def _machine_identity(machine: dict[str, Any]) -> dict[str, Any]:
    # What makes two machines' timings differ: CPU model, ISA flags, cores, OpenVINO's view.
    return {k: machine[k] for k in ("cpu", "cores", "isa", "openvino_capabilities")}


def variant_xml(ir: Entry, variant: str) -> Path:
    """The IR file of a row inside its export or quantize entry."""
    names = {"fp32": FP32_XML, "bf16": FP32_XML, "fp16": FP16_XML}
    return ir.file(names.get(variant, OPTIMIZED_XML))

