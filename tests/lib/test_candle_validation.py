"""Bad source tables are rejected with market, partition and the first offending rows."""

import numpy as np
import pyarrow as pa
import pytest

from tradecore_lib.candles import (
    CANDLE_SCHEMA,
    CandleValidationError,
    GapTolerance,
    candle_table,
    gap_report,
    inspect_coverage,
    inspect_gaps,
    month_complete,
    ts_millis,
    validate_candles,
)
from tradecore_lib.months import MINUTE_MS, Month

MONTH = Month(2024, 3)


def _table(n: int = 10, start_ms: int | None = None, **overrides) -> pa.Table:
    ts = (start_ms or MONTH.start_ms) + np.arange(n, dtype=np.int64) * MINUTE_MS
    close = 100.0 + np.arange(n, dtype=float)
    cols = {
        "ts": ts,
        "open": close - 0.5,
        "high": close + 1.0,
        "low": close - 1.0,
        "close": close,
        "volume": np.full(n, 2.0),
        "trades": np.full(n, 3),
    }
    cols.update(overrides)
    return candle_table(*cols.values())


def test_valid_table_passes():
    table = _table()
    assert validate_candles(table, "m", MONTH) is table


def _mutate(name: str, row: int, value: float) -> pa.Table:
    table = _table()
    column = table.column(name).to_numpy().copy()
    column[row] = value
    return table.set_column(
        table.schema.get_field_index(name), name, pa.array(column, table.schema.field(name).type)
    )


@pytest.mark.parametrize(
    ("table", "rule", "row"),
    [
        (_mutate("close", 4, np.nan), "NaN or infinite", 4),
        (_mutate("high", 6, np.inf), "NaN or infinite", 6),
        (_mutate("high", 3, 90.0), "high below max(open, close)", 3),
        (_mutate("low", 2, 200.0), "low above min(open, close)", 2),
        (_mutate("open", 5, -1.0), "non-positive price", 5),
        (_mutate("volume", 7, -0.1), "negative volume", 7),
    ],
)
def test_bad_values_are_rejected_naming_rows(table, rule, row):
    with pytest.raises(CandleValidationError) as info:
        validate_candles(table, "synthetic_btc_usd", MONTH)
    message = str(info.value)
    assert "synthetic_btc_usd/candles partition 2024-03" in message
    assert rule in message
    assert f"row={row}" in message
    assert "nothing was written" in message


def test_out_of_order_duplicated_and_off_grid_rows():
    ts = MONTH.start_ms + np.arange(10, dtype=np.int64) * MINUTE_MS
    swapped = ts.copy()
    swapped[[3, 4]] = swapped[[4, 3]]
    with pytest.raises(CandleValidationError, match="out of order") as info:
        validate_candles(_table(ts=swapped), "m", MONTH)
    assert "row=4" in str(info.value)
    duplicated = ts.copy()
    duplicated[5] = duplicated[4]
    with pytest.raises(CandleValidationError, match="duplicated"):
        validate_candles(_table(ts=duplicated), "m", MONTH)
    off_grid = ts.copy()
    off_grid[2] += 1500
    with pytest.raises(CandleValidationError, match="not on the minute grid"):
        validate_candles(_table(ts=off_grid), "m", MONTH)
    with pytest.raises(CandleValidationError, match="outside 2024-03"):
        validate_candles(_table(start_ms=MONTH.start_ms - 3 * MINUTE_MS), "m", MONTH)


def test_schema_mismatch_is_named():
    table = _table().cast(
        CANDLE_SCHEMA.set(CANDLE_SCHEMA.get_field_index("volume"), pa.field("volume", pa.float32()))
    )
    with pytest.raises(CandleValidationError, match="column 'volume' is float, expected double"):
        validate_candles(table, "m", MONTH)
    with pytest.raises(CandleValidationError, match="missing column 'trades'"):
        validate_candles(_table().drop_columns(["trades"]), "m", MONTH)


def test_gaps_count_between_first_and_last_only():
    # Starts 100 minutes into the month (market opened late), a 7-minute hole, stops early.
    ts = MONTH.start_ms + np.concatenate([np.arange(100, 200), np.arange(207, 300)]) * MINUTE_MS
    report = gap_report(ts.astype(np.int64), MONTH)
    assert report.missing_minutes == 7
    assert report.longest_gap_minutes == 7
    assert report.gaps == [(int(MONTH.start_ms + 200 * MINUTE_MS), 7)]
    assert report.uncovered_head_minutes == 100
    assert report.uncovered_tail_minutes == MONTH.minutes - 300


def test_gap_tolerance_warns_within_and_fails_past():
    ts = MONTH.start_ms + np.concatenate([np.arange(0, 500), np.arange(510, 1000)]) * MINUTE_MS
    table = _table(
        n=ts.size,
        ts=ts,
        open=np.full(ts.size, 10.0),
        high=np.full(ts.size, 11.0),
        low=np.full(ts.size, 9.0),
        close=np.full(ts.size, 10.0),
        volume=np.ones(ts.size),
        trades=np.ones(ts.size, dtype=np.int64),
    )
    within = inspect_gaps(table, MONTH, GapTolerance(max_missing_fraction=0.02, max_gap_minutes=10))
    assert within.passed and within.warning
    assert within.metadata["largest_gaps"][0]["missing_minutes"] == 10
    past = inspect_gaps(table, MONTH, GapTolerance(max_missing_fraction=0.02, max_gap_minutes=9))
    assert not past.passed
    assert "longest gap 10 min > 9 min" in past.description
    fraction = inspect_gaps(table, MONTH, GapTolerance(max_missing_fraction=0.005))
    assert not fraction.passed and "missing fraction" in fraction.description


def _month_ending(minutes_before_end: int) -> pa.Table:
    """The whole of MONTH except its last ``minutes_before_end`` minutes."""
    return _table(MONTH.minutes - minutes_before_end)


@pytest.mark.parametrize(
    "uncovered, passed, warning",
    [(0, True, False), (60, True, True), (61, False, False), (1440, False, False)],
)
def test_coverage_of_a_finished_month_follows_the_tail_tolerance(uncovered, passed, warning):
    tolerance = GapTolerance(max_uncovered_tail_minutes=60)
    after = MONTH.end_ms + 86_400_000
    outcome = inspect_coverage(_month_ending(uncovered), MONTH, tolerance, after)
    assert (outcome.passed, outcome.warning) == (passed, warning)
    assert outcome.metadata["uncovered_tail_minutes"] == uncovered
    assert outcome.metadata["month_complete"] is passed
    report = gap_report(ts_millis(_month_ending(uncovered)), MONTH, after)
    assert month_complete(report, MONTH, tolerance, after) is passed
    if not passed:
        assert f"{uncovered} min before the month's end (tolerance 60 min)" in outcome.description


def test_the_month_in_progress_is_exempt_and_never_complete():
    now = MONTH.start_ms + 10 * 86_400_000
    table = _table(5 * 1440)  # five days of data, five more days to now
    outcome = inspect_coverage(table, MONTH, GapTolerance(), now)
    assert outcome.passed and not outcome.warning and "month in progress" in outcome.description
    assert outcome.metadata["month_complete"] is False


def test_an_empty_finished_month_fails_coverage():
    outcome = inspect_coverage(_table(0), MONTH, GapTolerance(), None)
    assert not outcome.passed and "no candles in the finished month 2024-03" in outcome.description
