"""Accelerate a timm image classifier on this CPU with OpenVINO and NNCF, and report the cost.

    python cpu_model_acceleration.py --model_name resnet50 --dataset_path /data/imagenet

Runs the ``accelerate`` Prefect flow in-process (or against the server in PREFECT_API_URL) and
prints the results table.
"""

import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from qaccelx.cli import (
    configure_prefect_env,
    describe_interruption,
    parse_run_config,
    start_temporary_prefect_server,
)
from qaccelx.config import RunConfig

if TYPE_CHECKING:
    from prefect.states import State

__all__ = ["EXIT_ACCURACY_MISSED", "EXIT_INTERRUPTED", "main"]

# Exit status of a run that finished but missed --max_accuracy_drop with --strict_accuracy
# True; 1 is a run that could not be done, 2 a bad flag (argparse).
EXIT_ACCURACY_MISSED = 3

# Exit status after Ctrl-C, as shells report a process that SIGINT ended (128 + 2).
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    cfg = parse_run_config(argv)
    configure_prefect_env(cfg)

    # Imported only now: Prefect reads its logging settings when first imported.
    from qaccelx.quantize import describe_accuracy_target
    from qaccelx.report import format_report

    start = time.time()
    try:
        start_temporary_prefect_server()
        state = _run_flow(cfg)
    except KeyboardInterrupt:
        state = None  # Ctrl-C while the server was starting
    if state is None:
        print(f"error: {describe_interruption(cfg, start)}", file=sys.stderr)
        return EXIT_INTERRUPTED

    # A run that missed a strict accuracy target fails but still has results to show.
    results = state.result(raise_on_failure=False)
    if isinstance(results, dict):
        print(format_report(results))
        if results.get("accuracy_target"):
            print(describe_accuracy_target(results["accuracy_target"]))
    if not state.is_completed():
        print(f"error: {state.message}", file=sys.stderr)
        return EXIT_ACCURACY_MISSED if isinstance(results, dict) else 1
    return 0


def _run_flow(cfg: RunConfig) -> "State | None":
    # The flow's final state, or None when Ctrl-C stopped it. Ctrl-C raises KeyboardInterrupt,
    # but one that lands while OpenVINO converts an argument comes back as a RuntimeError, so
    # the signal itself is remembered as well.
    from flows.accelerate import accelerate

    interrupted = threading.Event()
    default_handler = signal.getsignal(signal.SIGINT)
    if callable(default_handler):

        def on_interrupt(signum: int, frame: Any) -> None:
            interrupted.set()
            default_handler(signum, frame)

        signal.signal(signal.SIGINT, on_interrupt)
    try:
        state = accelerate(**dataclasses.asdict(cfg), return_state=True)
    except KeyboardInterrupt:
        return None
    return None if interrupted.is_set() else state


if __name__ == "__main__":
    sys.exit(main())
