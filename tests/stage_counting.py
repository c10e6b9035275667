"""Count the real executions of each pipeline stage, in the test process or a child process.

The functions that do each stage's work are looked up in ``qaccelx.stages`` when a stage
computes, so wrapping them there counts every real computation, whoever runs the flow.

Run as a script, it counts into a file while running the command line, for tests that need
separate processes::

    python tests/stage_counting.py COUNT_FILE --model_name test_resnet ...
"""

import sys
from collections.abc import Callable
from typing import Any

import qaccelx.stages

__all__ = ["STAGE_OF_CALL", "count_stage_calls"]

# The functions that do each stage's work, and the stage name a call counts for (the row is
# the second positional argument, as qaccelx.stages passes it).
STAGE_OF_CALL: dict[str, Callable[[tuple[Any, ...]], str]] = {
    "export_ir": lambda args: "export",
    "save_calibration_set": lambda args: "calibration",
    "quantize_ir": lambda args: "quantize",
    "evaluate_ir": lambda args: f"evaluate[{args[1]}]",
    "benchmark_latency": lambda args: f"benchmark-latency[{args[1]}]",
    "benchmark_throughput": lambda args: f"benchmark-throughput[{args[1]}]",
}


def count_stage_calls(
    replace: Callable[[str, Callable[..., Any]], None],
    record: Callable[[str], None],
) -> None:
    """Wrap each stage's work function so that every call is recorded, then does the work.

    Args:
        replace: Installs a wrapper under a name in ``qaccelx.stages`` (``setattr`` or
            pytest's ``monkeypatch.setattr``).
        record: Called with the stage name before each real computation.
    """
    for name, stage_of in STAGE_OF_CALL.items():
        real = getattr(qaccelx.stages, name)

        def counted(*args: Any, _real: Any = real, _stage_of: Any = stage_of, **kwargs: Any) -> Any:
            record(_stage_of(args))
            return _real(*args, **kwargs)

        replace(name, counted)


def _append_line(path: str) -> Callable[[str], None]:
    def append(line: str) -> None:
        with open(path, "a") as stream:
            stream.write(f"{line}\n")

    return append


if __name__ == "__main__":
    count_stage_calls(lambda name, fn: setattr(qaccelx.stages, name, fn), _append_line(sys.argv[1]))

    import cpu_model_acceleration

    sys.exit(cpu_model_acceleration.main(sys.argv[2:]))
