"""Measure latency (batch 1, one stream) and throughput (async requests) of an IR on the CPU."""

import fcntl
import logging
import os
import platform
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import psutil
from tqdm import tqdm

from qaccelx.runtime import compile_variant, executed_precision, precision_hint
from qaccelx.versions import library_versions

__all__ = [
    "NOISY_SPREAD",
    "benchmark_ir",
    "benchmark_latency",
    "benchmark_lock",
    "benchmark_throughput",
    "combine_measurements",
    "describe_machine",
    "relative_spread",
]

logger = logging.getLogger(__name__)

# Untimed iterations that let OpenVINO allocate, tune and warm caches first.
_WARMUP_ITERATIONS = 10

# A median needs enough samples to mean something, however fast the model.
_MIN_LATENCY_ITERATIONS = 50

# Throughput rounds (one batch per infer request each) needed to judge its spread.
_MIN_THROUGHPUT_ROUNDS = 3

# Windows the throughput run is cut into to see how steady its rate was.
_THROUGHPUT_WINDOWS = 10

# Relative interquartile range (IQR / median) above which a figure is marked noisy. On a quiet
# machine OpenVINO's batch-1 latencies sit within a few percent of each other; other work
# competing for the cores spreads them far wider.
NOISY_SPREAD = 0.10

# CPU flags that decide which INT8/BF16/FP16 kernels OpenVINO can use.
_ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",
              "avx512_fp16", "amx_fp16")

# The capabilities a reader asks about first, each true when any of its CPU flags is present.
_FEATURES = {
    "vnni": ("avx512_vnni", "avx_vnni"),
    "amx": ("amx_bf16", "amx_int8", "amx_fp16"),
    "avx512_bf16": ("avx512_bf16",),
    "avx512_fp16": ("avx512_fp16",),
}

# Libraries whose versions change a measured figure.
_VERSIONED = ("openvino", "nncf", "torch", "timm", "prefect")


def benchmark_ir(
    xml_path: Path,
    variant: str,
    batch_size: int,
    min_seconds: float,
) -> dict[str, Any]:
    """Measure one row: batch-1 latency and batched throughput, one after the other.

    Args:
        xml_path: The IR.
        variant: The row (fp32, bf16, fp16, int8, int8_weights): decides the precision hint.
        batch_size: Images per request in the throughput run.
        min_seconds: Minimum measuring time of each of the two runs.

    Returns:
        ``latency_ms`` (see :func:`benchmark_latency`), ``throughput_fps`` and ``throughput``
        (see :func:`benchmark_throughput`), what the latency model executed
        (``inference_precision``, ``label``, ``compute_layers``, ``requested_precision``),
        ``latency_streams``, ``latency_threads``, and ``noisy`` when either run was.
    """
    latency = benchmark_latency(xml_path, variant, min_seconds)
    throughput = benchmark_throughput(xml_path, variant, batch_size, min_seconds)
    return combine_measurements(latency, throughput)


def combine_measurements(latency: dict[str, Any], throughput: dict[str, Any]) -> dict[str, Any]:
    """One row's results, as :func:`benchmark_ir` returns them, from its two measurements.

    The store keeps latency and throughput apart (only throughput depends on the batch size);
    the report reads them together.

    Args:
        latency: What :func:`benchmark_latency` returned.
        throughput: What :func:`benchmark_throughput` returned.
    """
    return {
        **latency,
        "throughput_fps": throughput["fps"],
        "throughput": throughput,
        "latency_streams": latency["streams"],
        "latency_threads": latency["threads"],
        "noisy": latency["latency_ms"]["noisy"] or throughput["noisy"],
    }


def benchmark_latency(xml_path: Path, variant: str, min_seconds: float) -> dict[str, Any]:
    """Batch-1 latency: one infer request, the LATENCY hint, a static shape, after warm-up.

    Measured as ``benchmark_app -hint latency`` measures it: the input is set once, and each
    iteration's time is OpenVINO's own ``InferRequest.latency`` (no Python overhead).

    Args:
        xml_path: The IR.
        variant: The row: decides the precision hint.
        min_seconds: Minimum measuring time; at least 50 iterations run however long it takes.

    Returns:
        ``latency_ms`` (``median``, ``p90``, ``min``, ``max``, ``q1``, ``q3``, ``iterations``,
        ``spread`` = IQR / median and ``noisy``), what executed, ``streams``, ``threads``
        and the machine's ``load_average`` (1, 5, 15 minutes) when the run ended.
    """
    with benchmark_lock():
        compiled = compile_variant(ov.Core(), xml_path, variant, "LATENCY", batch=1)
        times_ms = _time_requests(compiled, min_seconds)
        load = os.getloadavg()

    return {
        "latency_ms": _summarize_latency(times_ms),
        **executed_precision(compiled),
        "requested_precision": precision_hint(variant) or "default",
        "streams": int(compiled.get_property("NUM_STREAMS")),
        "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        "load_average": [round(value, 2) for value in load],
    }


def benchmark_throughput(
    xml_path: Path,
    variant: str,
    batch_size: int,
    min_seconds: float,
) -> dict[str, Any]:
    """Batched throughput: the THROUGHPUT hint and as many async requests as OpenVINO wants.

    Measured as ``benchmark_app -hint throughput`` measures it: each request's input is set
    once, the clock runs from the first start to the last completion, and the run ends on a
    whole round of requests.

    Args:
        xml_path: The IR.
        variant: The row: decides the precision hint.
        batch_size: Images per request (a static batch).
        min_seconds: Minimum measuring time; at least three rounds run however long it takes.

    Returns:
        ``fps``, ``batch_size``, ``requests``, ``streams``, ``threads``, ``batches``,
        ``seconds``, ``spread`` (IQR / median of the rates over about ten windows of whole
        rounds, None with fewer than three rounds), ``noisy``, what executed and the
        machine's ``load_average``.
    """
    with benchmark_lock():
        compiled = compile_variant(ov.Core(), xml_path, variant, "THROUGHPUT", batch=batch_size)
        run = _run_requests(compiled, min_seconds)
        load = os.getloadavg()

    spread = _round_spread(run["completions"], run["start"], run["requests"])
    return {
        "fps": run["batches"] * batch_size / run["seconds"],
        "batch_size": batch_size,
        "requests": run["requests"],
        "streams": int(compiled.get_property("NUM_STREAMS")),
        "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        "batches": run["batches"],
        "seconds": run["seconds"],
        "spread": spread,
        "noisy": spread is not None and spread > NOISY_SPREAD,
        **executed_precision(compiled),
        "load_average": [round(value, 2) for value in load],
    }


def relative_spread(values: Sequence[float]) -> float:
    """The interquartile range over the median: a spread that ignores a few outliers.

    Raises:
        ValueError: no values, or a median of zero.
    """
    q1, median, q3 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    if median <= 0:
        raise ValueError(f"a spread needs a positive median, got {median!r}")
    return float((q3 - q1) / median)


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
    """The conditions needed to repeat a timing.

    Returns:
        ``cpu`` (model name), ``cores`` (logical CPUs), ``physical_cores``,
        ``threads_available`` (CPUs this process may run on), ``isa`` (the relevant CPU
        flags), ``features`` (VNNI, AMX, AVX512-BF16, AVX512-FP16 as booleans),
        ``openvino_capabilities`` (the CPU plugin's OPTIMIZATION_CAPABILITIES),
        ``openvino_device``, ``platform``, ``python`` and library ``versions``.
    """
    cpuinfo = _read_cpuinfo()
    flags = set(cpuinfo.get("flags", "").split())
    core = ov.Core()
    return {
        "cpu": cpuinfo.get("model name", platform.processor() or "unknown"),
        "cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "threads_available": len(os.sched_getaffinity(0)),
        "isa": [flag for flag in _ISA_FLAGS if flag in flags],
        "features": {name: bool(flags & set(names)) for name, names in _FEATURES.items()},
        "openvino_capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")),
        "openvino_device": core.get_property("CPU", "FULL_DEVICE_NAME"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": library_versions(*_VERSIONED),
    }


def _time_requests(compiled: ov.CompiledModel, min_seconds: float) -> list[float]:
    request = compiled.create_infer_request()
    request.get_input_tensor().data[:] = _random_input(compiled)
    for _ in range(_WARMUP_ITERATIONS):
        request.infer()

    times_ms = []
    start = time.perf_counter()
    with tqdm(desc="latency", unit="it", leave=False, disable=None) as progress:
        while time.perf_counter() - start < min_seconds or len(times_ms) < _MIN_LATENCY_ITERATIONS:
            request.infer()
            times_ms.append(request.latency)
            progress.update()
    return times_ms


def _summarize_latency(times_ms: list[float]) -> dict[str, Any]:
    values = np.array(times_ms)
    q1, median, q3, p90 = np.percentile(values, [25, 50, 75, 90])
    spread = relative_spread(values)
    return {
        "median": float(median),
        "p90": float(p90),
        "min": float(values.min()),
        "max": float(values.max()),
        "q1": float(q1),
        "q3": float(q3),
        "iterations": len(values),
        "spread": spread,
        "noisy": spread > NOISY_SPREAD,
    }


def _run_requests(compiled: ov.CompiledModel, min_seconds: float) -> dict[str, Any]:
    requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, requests)
    image = _random_input(compiled)
    for i in range(requests):
        queue[i].get_input_tensor().data[:] = image

    # One round per request warms each stream before the clock starts.
    for _ in range(requests):
        queue.start_async()
    queue.wait_all()

    # start_async() returns once a request is free, that is when an earlier one completed:
    # those instants time the rounds without a Python callback (a callback would have to take
    # the GIL from OpenVINO's threads, which can deadlock against the queue's teardown).
    completions: list[float] = []
    batches = 0
    start = time.perf_counter()
    with tqdm(desc="throughput", unit="batch", leave=False, disable=None) as progress:
        # Whole rounds only, so every stream does the same share of the work.
        while (
            time.perf_counter() - start < min_seconds
            or batches < _MIN_THROUGHPUT_ROUNDS * requests
            or batches % requests
        ):
            queue.start_async()
            batches += 1
            if batches > requests:
                completions.append(time.perf_counter())
            progress.update()
        queue.wait_all()
    end = time.perf_counter()

    # The last round completes inside wait_all().
    completions += [end] * requests
    return {"requests": requests, "batches": batches, "seconds": end - start,
            "start": start, "completions": completions}


def _round_spread(completions: list[float], start: float, requests: int) -> float | None:
    # Rates over about ten windows of whole rounds (one batch per request each): per-round
    # rates of a fast model would measure scheduling jitter rather than the machine.
    round_ends = completions[requests - 1 :: requests]
    if len(round_ends) < _MIN_THROUGHPUT_ROUNDS:
        return None
    rounds_per_window = max(1, len(round_ends) // _THROUGHPUT_WINDOWS)
    window_ends = round_ends[rounds_per_window - 1 :: rounds_per_window]
    return relative_spread(1 / np.diff([start, *window_ends]))


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

