"""What every stage task does with its store entry once it has it."""

from prefect import get_run_logger

from qaccelx.store import Entry

__all__ = ["log_entry"]


def log_entry(entry: Entry) -> Entry:
    """Log whether the stage ran or was reused, and return the entry."""
    get_run_logger().info(
        "%s %s in %.1f s (key %s)", entry.stage, entry.status, entry.seconds, entry.key[:12]
    )
    return entry
