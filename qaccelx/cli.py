"""The seed-compatible command line: parse and check flags before any heavy import or work."""

import argparse
import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from qaccelx.config import (
    BASELINE_PRECISIONS,
    RECOMPUTE_CHOICES,
    RunConfig,
    parse_bool,
    resolve_cache_dir,
    validate_run_config,
)
from qaccelx.errors import InputError
from qaccelx.store import ArtifactStore

__all__ = [
    "build_parser",
    "configure_prefect_env",
    "describe_interruption",
    "parse_run_config",
    "start_temporary_prefect_server",
]

_DEFAULTS = RunConfig()

# How long the temporary Prefect server may take to start (it migrates its database first)
# and to stop.
_SERVER_START_SECONDS = 120
_SERVER_STOP_SECONDS = 10


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; names, types and defaults of the seed's flags are kept."""
    parser = _OneLineErrorParser(
        prog="cpu_model_acceleration.py",
        description=(
            "Export a timm image classifier to OpenVINO, quantize it with NNCF, and measure "
            "speed and ImageNet top-1 of the baseline and the optimized model on this CPU."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--model_name", default=_DEFAULTS.model_name,
        help="timm model name (resnet50, deit_base_patch16_224, ...), hf-hub:<repo> or "
        "local-dir:<folder with config.json and model.safetensors>")
    add("--accuracy_control", type=_bool, default=False,
        help="quantize with NNCF accuracy control, keeping the top-1 drop within "
        "--max_accuracy_drop on the calibration images")
    add("--transformer_model", type=_bool, default=None,
        help="True: NNCF transformer mode (SmoothQuant); False: default mode; "
        "not given: detected from the architecture (attention blocks)")
    add("--weight_only", type=_bool, default=False,
        help="compress weights to INT8 only (nncf.compress_weights); activations stay float")
    add("--dataset_path", default=_DEFAULTS.dataset_path,
        help="ImageNet root with val/ (optionally train/) in the ImageFolder layout, or a "
        "folder of <wnid> class folders")
    add("--batch_size", type=_positive_int, default=_DEFAULTS.batch_size,
        help="batch size for evaluation and the throughput benchmark")
    add("--baseline_precision", default=_DEFAULTS.baseline_precision, choices=BASELINE_PRECISIONS,
        type=str.lower, help="baseline the speed-up is measured against; fp32 also shows fp16")
    add("--debug", type=_bool, default=False,
        help="DEBUG logging and an export parity check (OpenVINO FP32 against torch)")
    add("--output_dir", default=_DEFAULTS.output_dir,
        help="folder for the optimized model and results.json (in a subfolder per model)")
    add("--results_json", default=None, help="also write the results JSON to this path")
    add("--max_accuracy_drop", type=_fraction, default=_DEFAULTS.max_accuracy_drop,
        help="accuracy control's allowed absolute top-1 drop (0.01 = one point)")
    add("--strict_accuracy", type=_bool, default=False,
        help="exit with status 3 when the accuracy loss exceeds --max_accuracy_drop (the "
        "results are still written); False: report the missed target and exit 0")
    add("--calibration_size", type=_positive_int, default=_DEFAULTS.calibration_size,
        help="calibration images; taken from train/ if present, else from val/ and then "
        "left out of evaluation")
    add("--checkpoint", default=None, help="local weights file for --model_name's architecture")
    add("--random_weights", type=_bool, default=False,
        help="speed-only run with seeded random weights: accuracy figures are meaningless")
    add("--cache_dir", default=None,
        help="artifact store (default: $QACCELX_CACHE_DIR, else $XDG_CACHE_HOME/qaccelx)")
    add("--benchmark_seconds", type=float, default=_DEFAULTS.benchmark_seconds,
        help="minimum measuring time of each latency and throughput measurement")
    add("--seed", type=int, default=_DEFAULTS.seed, help="seed of the calibration sample")
    add("--recompute", default=_DEFAULTS.recompute, choices=RECOMPUTE_CHOICES, type=str.lower,
        help="recompute stored results: all, or from this stage on (export, calibration, "
        "quantize, evaluate, benchmark) even when the store holds sound ones")
    add("--quantization_recipe", default=_DEFAULTS.quantization_recipe,
        help="NNCF settings: auto (by model family), nncf-defaults, or a family (depthwise-cnn, "
        "swin, deit, vit), optionally with overrides such as auto,fast_bias_correction=true")
    return parser


def parse_run_config(argv: Sequence[str] | None = None) -> RunConfig:
    """Parse and validate the command line; argparse exits with status 2 on a bad flag."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return validate_run_config(RunConfig(**vars(args)))
    except InputError as error:
        parser.error(str(error))


def configure_prefect_env(cfg: RunConfig) -> None:
    """Route the library's and NNCF's logs through Prefect's handlers; must precede its import."""
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "qaccelx,nncf")

    # The temporary server's usage heartbeat has nowhere to go offline and logs a failure.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if cfg.debug:
        os.environ["PREFECT_LOGGING_LEVEL"] = "DEBUG"


def start_temporary_prefect_server() -> None:
    """Start a temporary Prefect server for this command when no PREFECT_API_URL is set.

    Prefect would start one itself, but as a child in the terminal's process group: Ctrl-C
    then stops the server with the run, and Prefect spends minutes retrying to report the
    interruption to it. Started here in a session of its own, the server outlives Ctrl-C, and
    it stops when the process exits, after Prefect has sent its last logs. Must precede
    Prefect's import.

    Raises:
        RuntimeError: the server did not start.
    """
    if os.environ.get("PREFECT_API_URL"):
        return
    port = _free_loopback_port()
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--no-ui", "--no-services", "--analytics-off"]

    # Its log goes to a file, which _stop_server closes at exit: a pipe nobody reads would
    # stall the server once full.
    server_log = tempfile.TemporaryFile()  # noqa: SIM115
    server = subprocess.Popen(command, stdout=server_log, stderr=server_log, start_new_session=True)
    atexit.register(_stop_server, server, server_log)
    _wait_for_server(server, port, server_log)
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"


def _stop_server(server: subprocess.Popen, server_log: Any) -> None:
    # Runs after Prefect's own exit handlers, which send the last logs and events to it.
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=_SERVER_STOP_SECONDS)
    server_log.close()


def _free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_server(server: subprocess.Popen, port: int, server_log: Any) -> None:
    deadline = time.monotonic() + _SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            server_log.seek(0)
            tail = server_log.read()[-2000:].decode(errors="replace")
            raise RuntimeError(f"the temporary Prefect server stopped at start: {tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(
        f"the temporary Prefect server did not answer within {_SERVER_START_SECONDS} s"
    )


def describe_interruption(cfg: RunConfig, since: float) -> str:
    """Say what an interrupted run finished: the stage results it stored, which a re-run reuses.

    Args:
        cfg: The run's settings (for its store).
        since: When the run started, as ``time.time()``.

    Returns:
        One line for the console.
    """
    root = resolve_cache_dir(cfg.cache_dir)
    finished = [
        f"{entry.stage}[{entry.subject}]" if entry.subject else entry.stage
        for entry in ArtifactStore(root).entries()
        if entry.path.stat().st_mtime >= since
    ]
    return (
        f"interrupted: {', '.join(finished) or 'no stage'} finished in this run and "
        f"{'is' if len(finished) == 1 else 'are'} kept in {root}; the stage that was running "
        "left nothing behind; run the same command again to continue from there"
    )


class _OneLineErrorParser(argparse.ArgumentParser):
    # A mistyped flag deserves its one line, not the twenty-line usage block before it.
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _argument_type(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except (InputError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    parse.__name__ = convert.__name__
    return parse


def _parse_positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0  # not a number at all: the same message as for zero
    if value < 1:
        raise ValueError(f"{text!r} is not allowed: use a whole number of 1 or more")
    return value


def _parse_fraction(text: str) -> float:
    # The range itself is checked with the other settings, in validate_run_config.
    try:
        return float(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a number: use a fraction between 0 and 1 (0.01 is one point)"
        ) from None


_bool = _argument_type(parse_bool)
_positive_int = _argument_type(_parse_positive_int)
_fraction = _argument_type(_parse_fraction)
