"""Prefect tasks: one per pipeline stage, each a thin wrapper around ``qaccelx.stages``."""

from tasks.benchmark import latency_task, throughput_task
from tasks.calibrate import calibration_task
from tasks.evaluate import evaluate_task
from tasks.export import export_task
from tasks.quantize import quantize_task

__all__ = [
    "calibration_task",
    "evaluate_task",
    "export_task",
    "latency_task",
    "quantize_task",
    "throughput_task",
]
