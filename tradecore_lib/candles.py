"""The fixed one-minute candle schema and the checks every candle partition must pass.

The same inspections serve two purposes: rejecting a bad source table before anything is
written (:func:`validate_candles` raises) and the Dagster asset checks that re-read a
stored partition (each ``inspect_*`` returns a :class:`CheckOutcome`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import Field

from tradecore_lib.config import ConfigModel
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.months import MINUTE_MS, Month, iso_utc

CANDLE_SCHEMA = pa.schema(
    [
        pa.field("ts", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
        pa.field("trades", pa.int64(), nullable=True),
    ]
)
PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = (*PRICE_COLUMNS, "volume")

_PREVIEW_ROWS = 5


class CandleValidationError(TradeCoreError, ValueError):
    """A candle table broke the schema or a data rule; the message names market, month, rows."""


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one inspection of one partition.

    ``warning`` is set when the data passed but a user should look (gaps within tolerance).
    """

    name: str
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)
    warning: bool = False


class GapTolerance(ConfigModel):
    """How many missing minutes a partition may have before its gap check fails
    (``gap_tolerance:`` of a market in ``configs/markets.yaml``)."""

    max_missing_fraction: float = Field(
        default=0.01, ge=0, le=1,
        description="Missing minutes / minutes between the first and last candle (fraction).",
    )
    max_gap_minutes: int = Field(
        default=180, ge=0, description="The longest single run of missing minutes allowed."
    )
    max_uncovered_tail_minutes: int = Field(
        default=60, ge=0,
        description="A finished month whose data ends more than this many minutes before the "
        "month's end is not complete: its coverage check fails (the current month is exempt).",
    )


def candle_table(
    ts_ms: np.ndarray,
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    trades: np.ndarray | None,
) -> pa.Table:
    """Build a table in :data:`CANDLE_SCHEMA` from column arrays (ts in UTC milliseconds)."""
    trades_array = (
        pa.nulls(len(ts_ms), pa.int64()) if trades is None else pa.array(trades, pa.int64())
    )
    return pa.Table.from_arrays(
        [
            pa.array(np.asarray(ts_ms, dtype=np.int64), pa.int64()).cast(
                CANDLE_SCHEMA.field("ts").type
            ),
            pa.array(open_, pa.float64()),
            pa.array(high, pa.float64()),
            pa.array(low, pa.float64()),
            pa.array(close, pa.float64()),
            pa.array(volume, pa.float64()),
            trades_array,
        ],
        schema=CANDLE_SCHEMA,
    )


def ts_millis(table: pa.Table) -> np.ndarray:
    """The ``ts`` column as int64 UTC milliseconds."""
    return (
        table.column("ts")
        .cast(pa.timestamp("ms", tz="UTC"))
        .cast(pa.int64())
        .to_numpy(zero_copy_only=False)
    )


def _preview(table: pa.Table, rows: np.ndarray) -> list[dict[str, Any]]:
    """The first offending rows as plain dicts, with their row numbers."""
    out = []
    for row in rows[:_PREVIEW_ROWS]:
        record = {"row": int(row)}
        for name in table.column_names:
            value = table.column(name)[int(row)].as_py()
            record[name] = iso_utc(value) if isinstance(value, datetime) else value
        out.append(record)
    return out


def _format_rows(records: list[dict[str, Any]]) -> str:
    return "\n".join("    " + ", ".join(f"{k}={v}" for k, v in r.items()) for r in records)


def inspect_schema(table: pa.Table) -> CheckOutcome:
    """Column names, order and types equal :data:`CANDLE_SCHEMA`."""
    problems = []
    expected = {f.name: f.type for f in CANDLE_SCHEMA}
    actual = {f.name: f.type for f in table.schema}
    for name, dtype in expected.items():
        if name not in actual:
            problems.append(f"missing column {name!r} ({dtype})")
        elif actual[name] != dtype:
            problems.append(f"column {name!r} is {actual[name]}, expected {dtype}")
    for name in actual:
        if name not in expected:
            problems.append(f"unexpected column {name!r}")
    if not problems and table.column_names != CANDLE_SCHEMA.names:
        problems.append(f"column order {table.column_names}, expected {CANDLE_SCHEMA.names}")
    for name in ("ts", *VALUE_COLUMNS):
        if name in actual and table.column(name).null_count:
            problems.append(f"column {name!r} has {table.column(name).null_count} nulls")
    if problems:
        return CheckOutcome("schema", False, "schema mismatch: " + "; ".join(problems))
    return CheckOutcome("schema", True, "columns and dtypes match the candle schema")


def inspect_time_grid(table: pa.Table, month: Month) -> CheckOutcome:
    """Timestamps on the minute grid, strictly increasing (sorted and unique), inside ``month``."""
    ts = ts_millis(table)
    rules = [
        ("not on the minute grid", np.flatnonzero(ts % MINUTE_MS != 0)),
        (f"outside {month}", np.flatnonzero((ts < month.start_ms) | (ts >= month.end_ms))),
    ]
    steps = np.diff(ts)
    rules.append(("out of order", np.flatnonzero(steps < 0) + 1))
    rules.append(("duplicated", np.flatnonzero(steps == 0) + 1))
    broken = _first_broken_rule("time_grid", table, "timestamp(s)", rules)
    return broken or CheckOutcome(
        "time_grid", True, f"{len(ts)} timestamps sorted, unique, on the grid"
    )


def inspect_ohlc(table: pa.Table) -> CheckOutcome:
    """Prices finite and > 0, volume finite and >= 0, high/low enclose open and close."""
    cols = {name: table.column(name).to_numpy(zero_copy_only=False) for name in VALUE_COLUMNS}
    o, h, lo, c, v = (cols[n] for n in VALUE_COLUMNS)
    with np.errstate(invalid="ignore"):
        masks = [
            ("with NaN or infinite value", ~np.isfinite(np.stack([o, h, lo, c, v])).all(axis=0)),
            ("with non-positive price", (np.stack([o, h, lo, c]) <= 0).any(axis=0)),
            ("with negative volume", v < 0),
            ("with high below max(open, close)", h < np.maximum(o, c)),
            ("with low above min(open, close)", lo > np.minimum(o, c)),
        ]
    rules = [(rule, np.flatnonzero(mask)) for rule, mask in masks]
    broken = _first_broken_rule("ohlc_sanity", table, "row(s)", rules)
    return broken or CheckOutcome(
        "ohlc_sanity", True, f"{table.num_rows} rows with consistent OHLCV"
    )


def _first_broken_rule(
    name: str, table: pa.Table, noun: str, rules: list[tuple[str, np.ndarray]]
) -> CheckOutcome | None:
    """A failed outcome for the first rule with offending rows (row indices), else None."""
    for rule, rows in rules:
        if rows.size:
            return CheckOutcome(
                name,
                False,
                f"{rows.size} {noun} {rule}",
                {"first_offending_rows": _preview(table, rows)},
            )
    return None


@dataclass(frozen=True)
class GapReport:
    """Missing minutes of one partition.

    ``missing_minutes`` counts minutes absent between the first and last candle; time before
    the first or after the last candle (a market that started mid-month, the rest of the
    current month) is ``uncovered_head_minutes`` / ``uncovered_tail_minutes``, not a gap.
    """

    rows: int
    missing_minutes: int
    longest_gap_minutes: int
    gaps: list[tuple[int, int]]  # (first missing ts ms, number of missing minutes)
    uncovered_head_minutes: int
    uncovered_tail_minutes: int

    @property
    def span_minutes(self) -> int:
        return self.rows + self.missing_minutes


def gap_report(ts_ms: np.ndarray, month: Month, now_ms: int | None = None) -> GapReport:
    """Gaps of a sorted, unique minute series inside ``month``.

    ``now_ms`` bounds the tail of the current month: minutes after it do not exist yet.
    """
    if ts_ms.size == 0:
        return GapReport(0, 0, 0, [], month.minutes, 0)
    steps = np.diff(ts_ms) // MINUTE_MS - 1
    where = np.flatnonzero(steps > 0)
    gaps = [(int(ts_ms[i] + MINUTE_MS), int(steps[i])) for i in where]
    end = month.end_ms if now_ms is None else min(month.end_ms, now_ms)
    tail = max(0, (end - int(ts_ms[-1])) // MINUTE_MS - 1)
    return GapReport(
        rows=int(ts_ms.size),
        missing_minutes=int(steps[where].sum()),
        longest_gap_minutes=int(steps[where].max()) if where.size else 0,
        gaps=gaps,
        uncovered_head_minutes=int((ts_ms[0] - month.start_ms) // MINUTE_MS),
        uncovered_tail_minutes=int(tail),
    )


def inspect_gaps(
    table: pa.Table, month: Month, tolerance: GapTolerance, now_ms: int | None = None
) -> CheckOutcome:
    """Gap report against ``tolerance``: pass, pass with warning (gaps within it) or fail."""
    report = gap_report(ts_millis(table), month, now_ms)
    gap_rows = [
        {"start": iso_utc(start), "missing_minutes": minutes}
        for start, minutes in sorted(report.gaps, key=lambda g: -g[1])[:50]
    ]
    fraction = report.missing_minutes / report.span_minutes if report.span_minutes else 0.0
    metadata = {
        "missing_minutes": report.missing_minutes,
        "missing_fraction": round(fraction, 6),
        "longest_gap_minutes": report.longest_gap_minutes,
        "gap_count": len(report.gaps),
        "uncovered_head_minutes": report.uncovered_head_minutes,
        "uncovered_tail_minutes": report.uncovered_tail_minutes,
        "largest_gaps": gap_rows,
        "tolerance_max_missing_fraction": tolerance.max_missing_fraction,
        "tolerance_max_gap_minutes": tolerance.max_gap_minutes,
    }
    summary = (
        f"{report.missing_minutes} missing minute(s) in {len(report.gaps)} gap(s), "
        f"longest {report.longest_gap_minutes} min ({fraction:.4%} of the covered span)"
    )
    breaches = []
    if fraction > tolerance.max_missing_fraction:
        breaches.append(f"missing fraction {fraction:.4%} > {tolerance.max_missing_fraction:.4%}")
    if report.longest_gap_minutes > tolerance.max_gap_minutes:
        breaches.append(
            f"longest gap {report.longest_gap_minutes} min > {tolerance.max_gap_minutes} min"
        )
    if breaches:
        return CheckOutcome(
            "gaps", False, f"{summary}: past tolerance ({'; '.join(breaches)})", metadata
        )
    if report.missing_minutes:
        return CheckOutcome("gaps", True, f"{summary}: within tolerance", metadata, warning=True)
    return CheckOutcome("gaps", True, "no missing minutes", metadata)


def month_complete(
    report: GapReport, month: Month, tolerance: GapTolerance, now_ms: int | None
) -> bool:
    """Whether ``month`` is over and its data reaches within the tolerance of its end.

    ``now_ms`` None means "long after the month". A month still in progress is never
    complete; a finished one is when it has candles and its uncovered tail is at most
    ``tolerance.max_uncovered_tail_minutes``.
    """
    finished = now_ms is None or now_ms >= month.end_ms
    return (finished and report.rows > 0
            and report.uncovered_tail_minutes <= tolerance.max_uncovered_tail_minutes)


def inspect_coverage(
    table: pa.Table, month: Month, tolerance: GapTolerance, now_ms: int | None = None
) -> CheckOutcome:
    """Whether a finished month's data reaches its end; the month in progress is exempt.

    Fails when the data of a past month ends more than ``max_uncovered_tail_minutes`` before
    the month's end (the venue served no trades after it: the month is not complete), or a
    past month holds no candle at all; passes with a warning for a shorter uncovered tail.
    The head (a market that began trading mid-month) is reported, never judged.
    """
    ts = ts_millis(table)
    report = gap_report(ts, month, now_ms)
    complete = month_complete(report, month, tolerance, now_ms)
    metadata = {
        "month_complete": complete,
        "first_ts": iso_utc(int(ts[0])) if ts.size else "-",
        "last_ts": iso_utc(int(ts[-1])) if ts.size else "-",
        "uncovered_head_minutes": report.uncovered_head_minutes,
        "uncovered_tail_minutes": report.uncovered_tail_minutes,
        "tolerance_max_uncovered_tail_minutes": tolerance.max_uncovered_tail_minutes,
    }
    if now_ms is not None and now_ms < month.end_ms:
        return CheckOutcome(
            "coverage", True, f"month in progress: {report.rows} candles up to "
            f"{metadata['last_ts']}; its end is judged once the month is over", metadata
        )
    if not ts.size:
        return CheckOutcome(
            "coverage", False, f"no candles in the finished month {month}; re-materialize it "
            "once the venue has the data, or move the market's first_month past it", metadata
        )
    tail = report.uncovered_tail_minutes
    if not complete:
        return CheckOutcome(
            "coverage", False, f"data ends at {metadata['last_ts']}, {tail} min before the "
            f"month's end (tolerance {tolerance.max_uncovered_tail_minutes} min): the month "
            "is not complete; re-materialize it once the venue has the data, or raise "
            "gap_tolerance.max_uncovered_tail_minutes in configs/markets.yaml", metadata
        )
    if tail:
        return CheckOutcome(
            "coverage", True, f"data ends at {metadata['last_ts']}, {tail} min before the "
            "month's end: within tolerance", metadata, warning=True
        )
    return CheckOutcome("coverage", True, "the month is covered to its last minute", metadata)


def validate_candles(table: pa.Table, market: str, month: Month) -> pa.Table:
    """Reject a source table that breaks the schema, the minute grid or OHLC sanity.

    Returns the table unchanged when it is valid; raises :class:`CandleValidationError`
    naming the market, the partition and the first offending rows otherwise.
    """
    schema = inspect_schema(table)
    outcomes = (
        [schema]
        if not schema.passed
        else [schema, inspect_time_grid(table, month), inspect_ohlc(table)]
    )
    for outcome in outcomes:
        if not outcome.passed:
            rows = outcome.metadata.get("first_offending_rows")
            detail = f"\n  first offending rows:\n{_format_rows(rows)}" if rows else ""
            raise CandleValidationError(
                f"{market}/candles partition {month}: {outcome.description}; "
                f"nothing was written for this partition.{detail}"
            )
    return table
