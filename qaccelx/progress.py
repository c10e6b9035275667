"""Progress of a long stage: a console bar, and a log line every tenth of the work.

The bar serves a terminal; the log lines reach Prefect's run logs and UI, where a bar does not.
"""

import logging
from types import TracebackType

from tqdm import tqdm

__all__ = ["StageProgress"]

logger = logging.getLogger(__name__)

# Log lines per stage: often enough to show movement, rarely enough to keep logs readable.
_LOG_STEPS = 10


class StageProgress:
    """Count work done in a stage; use as a context manager around the loop."""

    def __init__(self, total: int, desc: str, unit: str = "img") -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done = 0
        self._step = max(1, total // _LOG_STEPS)
        self._next_log = self._step
        self._bar = tqdm(total=total, desc=desc, unit=unit, disable=None)

    def __enter__(self) -> "StageProgress":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._bar.close()

    def update(self, count: int) -> None:
        """Record ``count`` more units done."""
        self._bar.update(count)
        self.done += count
        if self.done >= self._next_log or self.done == self.total:
            logger.info("%s: %d/%d %s", self.desc, self.done, self.total, self.unit)
            self._next_log = self.done + self._step
