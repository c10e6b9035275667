"""What every stage task does with its store entry once it has it, and how the flow runs one."""

from typing import Any

from prefect import Task, get_run_logger
from prefect.states import Completed, State

from qaccelx.store import Entry

__all__ = ["finish_stage", "run_stage"]


def finish_stage(entry: Entry) -> Entry | State:
    """Log whether the stage ran or was reused; a reused entry ends its task run as Cached.

    Prefect names a task run's final state "Cached" when it is a cache hit, and its logs and
    UI show it so. The store decides here, after re-checking the entry's digests, so Prefect
    shows what really happened without keeping a second copy of the results.

    Args:
        entry: The stage's entry, computed in this run or found in the store.

    Returns:
        The entry itself when it was computed; a Completed state named "Cached" holding it when
        it came from the store.
    """
    get_run_logger().info(
        "%s %s in %.2f s (key %s)", entry.stage, entry.status, entry.seconds, entry.key[:12]
    )
    if entry.status == "cached":
        return Completed(name="Cached", data=entry, message=f"{entry.stage} reused from the store")
    return entry


def run_stage(stage_task: Task[..., Any], *args: Any, **kwargs: Any) -> Entry:
    """Run a stage task in the flow and return its entry, whether computed or reused.

    Calling a task that returned a state gives that state back; its result is the entry.

    Raises:
        Exception: whatever the stage raised, unchanged.
    """
    return stage_task(*args, return_state=True, **kwargs).result()
