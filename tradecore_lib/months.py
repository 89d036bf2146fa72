"""Calendar months, the unit of partitioning, as UTC millisecond bounds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

MINUTE_MS = 60_000

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})(?:-01)?$")


@dataclass(frozen=True, order=True)
class Month:
    """One calendar month in UTC."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ValueError(f"month must be 1..12, got {self.month} in {self.year}")

    @classmethod
    def parse(cls, text: str) -> Month:
        """Parse ``YYYY-MM`` or a Dagster monthly partition key ``YYYY-MM-01``."""
        match = _MONTH_RE.match(text.strip())
        if not match:
            raise ValueError(f"not a month: {text!r} (expected YYYY-MM or YYYY-MM-01)")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of_ms(cls, ts_ms: int) -> Month:
        """The month containing a UTC timestamp in milliseconds."""
        dt = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
        return cls(dt.year, dt.month)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def start_ms(self) -> int:
        """First millisecond of the month (inclusive)."""
        return int(self.start.timestamp() * 1000)

    @property
    def end_ms(self) -> int:
        """First millisecond of the next month (exclusive)."""
        return self.next().start_ms

    @property
    def minutes(self) -> int:
        return (self.end_ms - self.start_ms) // MINUTE_MS

    @property
    def partition_key(self) -> str:
        """The Dagster monthly partition key, ``YYYY-MM-01``."""
        return f"{self.year:04d}-{self.month:02d}-01"

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def months_between(first: Month, last: Month) -> list[Month]:
    """All months from ``first`` to ``last``, both inclusive."""
    out: list[Month] = []
    current = first
    while current <= last:
        out.append(current)
        current = current.next()
    return out


def iso_utc(ts: int | datetime) -> str:
    """ISO-8601 UTC text with milliseconds and a ``Z``: ``2024-03-01T00:00:00.000Z``.

    ``ts`` is UTC milliseconds since the epoch, or a timezone-aware datetime. The one
    timestamp format of TradeCore's messages, metadata and manifests.
    """
    if isinstance(ts, datetime):
        ts = round(ts.timestamp() * 1000)
    moment = datetime.fromtimestamp(ts / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts % 1000:03d}Z"


def utc_now_ms() -> int:
    """The current time in UTC milliseconds."""
    return int(datetime.now(tz=UTC).timestamp() * 1000)
