"""Errors a user can fix, and how they reach the user: as one line, never as a traceback.

Bad input raises ``InputError`` wherever it is found. A full disk is not bad input, but the
user fixes it just the same, so it gets a one-line message too. Everything else is a bug and
keeps its traceback.
"""

import errno
import logging

__all__ = [
    "InputError",
    "QuietUserErrors",
    "describe_user_error",
    "is_disk_full",
    "quiet_user_error_tracebacks",
]

# errno values of a write that ran out of room: no space, over quota, file too large.
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)

# How OpenVINO's serializer reports a failed write: the C++ stream's error, without errno.
_OPENVINO_WRITE_FAILURE = "iostream error"


class InputError(ValueError):
    """Bad input from the user; the command line prints its message as one line.

    The message names the value, what is allowed and how to fix it.
    """


def is_disk_full(error: BaseException) -> bool:
    """Whether an error is a write that ran out of disk space (or quota, or file size)."""
    if isinstance(error, OSError):
        return error.errno in _DISK_FULL_ERRNOS
    return isinstance(error, RuntimeError) and _OPENVINO_WRITE_FAILURE in str(error)


def describe_user_error(error: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for any other error.

    Args:
        error: The error a run ended with.

    Returns:
        The message to show instead of a traceback, or None when the error is a bug.
    """
    if isinstance(error, InputError):
        return str(error)
    if is_disk_full(error):
        where = f" {error.filename}" if getattr(error, "filename", None) else ""
        return (
            f"the disk ran out of space while saving{where} ({error}): free some space, or "
            "point --cache_dir and --output_dir at a larger disk; finished stages are kept "
            "and the same command resumes from them"
        )
    return None


class QuietUserErrors(logging.Filter):
    """Drops the traceback from a log record whose error the user can fix.

    Prefect's engines log every failed task with its traceback; for a user error that buries
    the one line that matters, which the command line prints at the end anyway.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep the record, without its traceback when it carries a user error."""
        error = record.exc_info[1] if record.exc_info else None
        if error is not None and describe_user_error(error) is not None:
            record.exc_info = None
            record.exc_text = None
        return True


def quiet_user_error_tracebacks(*logger_names: str) -> None:
    """Attach ``QuietUserErrors`` to these loggers, once each.

    Args:
        logger_names: Loggers whose records may carry a user error, such as Prefect's
            ``prefect.task_runs``.
    """
    for name in logger_names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QuietUserErrors) for f in logger.filters):
            logger.addFilter(QuietUserErrors())
