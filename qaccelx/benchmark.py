"""Measure latency (batch 1, one stream) and throughput (async requests) of an IR on the CPU."""

import fcntl
import logging
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
from tqdm import tqdm

from qaccelx.runtime import compile_variant, executed_precision
from qaccelx.versions import library_versions

__all__ = ["benchmark_ir", "benchmark_lock", "describe_machine"]

logger = logging.getLogger(__name__)

# Untimed iterations that let OpenVINO allocate, tune and warm caches first.
_WARMUP_ITERATIONS = 10

# A median needs enough samples to mean something, however fast the model.
_MIN_LATENCY_ITERATIONS = 50

# CPU flags that decide which INT8/BF16/FP16 kernels OpenVINO can use.
_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
              "avx512_fp16", "amx_fp16")

# Libraries whose versions change a measured figure.
_VERSIONED = ("openvino", "nncf", "torch", "timm", "prefect")


def benchmark_ir(
    xml_path: Path,
    variant: str,
    batch_size: int,
    min_seconds: float,
) -> dict[str, Any]:
    """Measure one row: batch-1 latency and batched throughput.

    Args:
        xml_path: The IR.
        variant: The row (fp32, fp16, int8, int8_weights): decides the precision hint.
        batch_size: Images per request in the throughput run.
        min_seconds: Minimum measuring time of each of the two runs.

    Returns:
        ``latency_ms`` (median, p90, min, max, iterations), ``throughput_fps`` and what the
        compiled models executed (precision, streams, threads).
    """
    core = ov.Core()
    with benchmark_lock():
        latency_model = compile_variant(core, xml_path, variant, "LATENCY", batch=1)
        latency = _measure_latency(latency_model, min_seconds)
        throughput_model = compile_variant(core, xml_path, variant, "THROUGHPUT", batch=batch_size)
        throughput = _measure_throughput(throughput_model, batch_size, min_seconds)

    return {
        "latency_ms": latency,
        "throughput_fps": throughput["fps"],
        "throughput": throughput,
        **executed_precision(latency_model),
        "latency_streams": int(latency_model.get_property("NUM_STREAMS")),
        "latency_threads": int(latency_model.get_property("INFERENCE_NUM_THREADS")),
    }


@contextmanager
def benchmark_lock() -> Iterator[None]:
    """Hold the machine-wide benchmark lock: two benchmarks at once would measure each other."""
    lock_path = Path(tempfile.gettempdir()) / "qaccelx-benchmark.lock"
    with open(lock_path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def describe_machine() -> dict[str, Any]:
    """The conditions needed to repeat a timing: CPU, ISA flags, cores, library versions."""
    cpuinfo = _read_cpuinfo()
    flags = set(cpuinfo.get("flags", "").split())
    core = ov.Core()
    return {
        "cpu": cpuinfo.get("model name", platform.processor() or "unknown"),
        "cores": os.cpu_count(),
        "isa": [flag for flag in _ISA_FLAGS if flag in flags],
        "openvino_capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
        "python": platform.python_version(),
        "versions": library_versions(*_VERSIONED),
    }


def _measure_latency(compiled: ov.CompiledModel, min_seconds: float) -> dict[str, float]:
    request = compiled.create_infer_request()
    image = _random_input(compiled)
    for _ in range(_WARMUP_ITERATIONS):
        request.infer(image)

    times_ms = []
    start = time.perf_counter()
    with tqdm(desc="latency", unit="it", leave=False, disable=None) as progress:
        while time.perf_counter() - start < min_seconds or len(times_ms) < _MIN_LATENCY_ITERATIONS:
            begin = time.perf_counter()
            request.infer(image)
            times_ms.append((time.perf_counter() - begin) * 1000)
            progress.update()

    values = np.array(times_ms)
    return {
        "median": float(np.median(values)),
        "p90": float(np.percentile(values, 90)),
        "min": float(values.min()),
        "max": float(values.max()),
        "iterations": len(values),
    }


def _measure_throughput(compiled: ov.CompiledModel, batch_size: int, min_seconds: float) -> dict:
    requests = compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    queue = ov.AsyncInferQueue(compiled, requests)
    image = _random_input(compiled)

    # One round per request warms each stream before the clock starts.
    for _ in range(requests):
        queue.start_async(image)
    queue.wait_all()

    batches = 0
    start = time.perf_counter()
    with tqdm(desc="throughput", unit="batch", leave=False, disable=None) as progress:
        while time.perf_counter() - start < min_seconds or batches < 2 * requests:
            queue.start_async(image)
            batches += 1
            progress.update()
        queue.wait_all()
    elapsed = time.perf_counter() - start

    return {
        "fps": batches * batch_size / elapsed,
        "batch_size": batch_size,
        "requests": int(requests),
        "streams": int(compiled.get_property("NUM_STREAMS")),
        "batches": batches,
        "seconds": elapsed,
    }


def _random_input(compiled: ov.CompiledModel) -> np.ndarray:
    # Timings do not depend on pixel values; a fixed seed keeps runs identical anyway.
    shape = list(compiled.inputs[0].get_shape())
    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)


def _read_cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in info:
            info[key.strip()] = value.strip()
    return info

