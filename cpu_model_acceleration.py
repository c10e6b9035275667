"""Accelerate a timm image classifier on this CPU with OpenVINO and NNCF, and report the cost.

    python cpu_model_acceleration.py --model_name resnet50 --dataset_path /data/imagenet

Runs the ``accelerate`` Prefect flow in-process (or against the server in PREFECT_API_URL) and
prints the results table.
"""

import dataclasses
import sys
from collections.abc import Sequence

from qaccelx.cli import configure_prefect_env, parse_run_config

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit status."""
    cfg = parse_run_config(argv)
    configure_prefect_env(cfg)

    # Imported only now: Prefect reads its logging settings when first imported.
    from flows.accelerate import accelerate
    from qaccelx.report import format_report

    state = accelerate(**dataclasses.asdict(cfg), return_state=True)
    if not state.is_completed():
        print(f"error: {state.message}", file=sys.stderr)
        return 1
    print(format_report(state.result()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
