"""Progress of long work: percent, rate and ETA to a log callback; a tqdm bar in a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from tqdm import tqdm


class Progress:
    """Count work units and report percent, rate and ETA.

    Reports go to ``log`` (a Dagster ``context.log.info`` or ``print``) at most every
    ``every_seconds`` and at completion. A tqdm bar is drawn too when stderr is a terminal.
    """

    def __init__(
        self,
        total: int,
        *,
        what: str,
        unit: str,
        log: Callable[[str], None] | None = None,
        every_seconds: float = 5.0,
    ) -> None:
        self.total = max(int(total), 0)
        self.what = what
        self.unit = unit
        self.done = 0
        self._log = log
        self._every = every_seconds
        self._start = time.monotonic()
        self._last_report = float("-inf")
        self._bar = (
            tqdm(total=self.total, desc=what, unit=unit, leave=False)
            if sys.stderr.isatty()
            else None
        )

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        now = time.monotonic()
        if self.done >= self.total or now - self._last_report >= self._every:
            self._last_report = now
            if self._log is not None:
                self._log(self.line())

    def line(self) -> str:
        """``what: 42.0% (21/50 unit), 3.2 unit/s, ETA 9s``."""
        elapsed = max(time.monotonic() - self._start, 1e-9)
        rate = self.done / elapsed
        percent = 100.0 * self.done / self.total if self.total else 100.0
        remaining = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = "done" if self.done >= self.total else f"ETA {_duration(remaining)}"
        return (
            f"{self.what}: {percent:.1f}% ({self.done}/{self.total} {self.unit}), "
            f"{rate:,.1f} {self.unit}/s, {eta}"
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
