"""The synthetic venue: determinism per (seed, market, minute), independence and realism."""

import subprocess
import sys

import numpy as np
import pytest

from tradecore_lib.candles import (
    GapTolerance,
    gap_report,
    inspect_gaps,
    inspect_ohlc,
    inspect_time_grid,
    ts_millis,
)
from tradecore_lib.lake import parquet_bytes
from tradecore_lib.months import MINUTE_MS, Month
from tradecore_lib.synthetic import (
    SyntheticParams,
    SyntheticRangeError,
    generate_month,
)

PARAMS = SyntheticParams()
MARKET = "synthetic_btc_usd"
FEB = Month(2024, 2)

_FEB_ALONE = (
    "import hashlib, sys\n"
    "from tradecore_lib.lake import parquet_bytes\n"
    "from tradecore_lib.months import Month\n"
    "from tradecore_lib.synthetic import SyntheticParams, generate_month\n"
    "t = generate_month(SyntheticParams(), 'synthetic_btc_usd', Month(2024, 2))\n"
    "sys.stdout.write(hashlib.sha256(parquet_bytes(t)).hexdigest())\n"
)


@pytest.fixture(scope="module")
def feb():
    return generate_month(PARAMS, MARKET, FEB)


def test_month_is_byte_identical_and_independent_of_other_months(feb):
    import hashlib

    # Generate neighbours first in this process, then February again.
    generate_month(PARAMS, MARKET, Month(2024, 1))
    generate_month(PARAMS, MARKET, Month(2024, 3))
    again = generate_month(PARAMS, MARKET, FEB)
    assert parquet_bytes(again) == parquet_bytes(feb)
    # A fresh process that generates only February produces the same bytes.
    alone = subprocess.run(
        [sys.executable, "-c", _FEB_ALONE], capture_output=True, text=True, check=True
    ).stdout
    assert alone == hashlib.sha256(parquet_bytes(feb)).hexdigest()


def test_seed_and_market_change_the_data(feb):
    other_seed = generate_month(SyntheticParams(seed=8), MARKET, FEB)
    other_market = generate_month(PARAMS, "synthetic_eth_usd", FEB)
    close = feb.column("close").to_numpy()
    assert not np.array_equal(close[:100], other_seed.column("close").to_numpy()[:100])
    assert not np.array_equal(close[:100], other_market.column("close").to_numpy()[:100])


def test_months_join_continuously():
    jan = generate_month(PARAMS, MARKET, Month(2024, 1))
    feb = generate_month(PARAMS, MARKET, FEB)
    jan_ts, feb_ts = ts_millis(jan), ts_millis(feb)
    if jan_ts[-1] == FEB.start_ms - MINUTE_MS and feb_ts[0] == FEB.start_ms:
        # Adjacent minutes across the boundary: open of the new month = last close.
        assert feb.column("open")[0].as_py() == jan.column("close")[-1].as_py()
    # Prices stay on the same level across the boundary either way.
    ratio = feb.column("open")[0].as_py() / jan.column("close")[-1].as_py()
    assert 0.95 < ratio < 1.05


def test_candles_are_valid(feb):
    assert inspect_time_grid(feb, FEB).passed
    assert inspect_ohlc(feb).passed
    assert inspect_gaps(feb, FEB, GapTolerance()).passed


def test_volatility_clusters(feb):
    close = feb.column("close").to_numpy()
    abs_returns = np.abs(np.diff(np.log(close)))
    hourly = abs_returns[: abs_returns.size // 60 * 60].reshape(-1, 60).mean(axis=1)
    lag1 = np.corrcoef(hourly[:-1], hourly[1:])[0, 1]
    raw = np.diff(np.log(close))
    lag1_raw = np.corrcoef(raw[:-1], raw[1:])[0, 1]
    assert lag1 > 0.3  # volatility is persistent hour to hour
    assert abs(lag1_raw) < 0.1  # returns themselves are not predictable


def test_intraday_and_weekly_volume_seasonality(feb):
    ts = ts_millis(feb)
    volume = feb.column("volume").to_numpy()
    hour = (ts // 3_600_000) % 24
    weekday = ((ts // 86_400_000) + 3) % 7  # 1970-01-01 was a Thursday (3)
    us_session = volume[(hour >= 13) & (hour < 17) & (weekday < 5)].mean()
    quiet = volume[(hour >= 20) & (hour < 23) & (weekday < 5)].mean()
    weekend = volume[weekday >= 5].mean()
    weekdays = volume[weekday < 5].mean()
    assert us_session > 1.5 * quiet
    assert weekend < 0.8 * weekdays


def test_regimes_shift_volatility():
    months = [generate_month(PARAMS, MARKET, Month(2024, m)) for m in range(1, 7)]
    vols = [np.diff(np.log(t.column("close").to_numpy())).std() for t in months]
    assert max(vols) / min(vols) > 1.5


def test_missing_minutes_follow_the_configured_rate():
    none = generate_month(
        SyntheticParams(missing_minute_rate=0.0, outages_per_day=0.0), MARKET, FEB
    )
    assert none.num_rows == FEB.minutes
    many = generate_month(
        SyntheticParams(missing_minute_rate=0.01, outages_per_day=0.0), MARKET, FEB
    )
    report = gap_report(ts_millis(many), FEB)
    assert 0.007 < report.missing_minutes / FEB.minutes < 0.013


def test_current_month_stops_at_now():
    now = FEB.start_ms + 10 * 86_400_000 + 30 * MINUTE_MS + 1234
    table = generate_month(PARAMS, MARKET, FEB, now_ms=now)
    ts = ts_millis(table)
    assert ts[-1] < now - now % MINUTE_MS
    assert ts[-1] >= now - 60 * MINUTE_MS


def test_outside_horizon_is_a_clear_error():
    with pytest.raises(SyntheticRangeError, match="synthetic venue covers 2018-01"):
        generate_month(PARAMS, MARKET, Month(2010, 1))


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match="unknown synthetic source option"):
        SyntheticParams.from_mapping({"sed": 1})
