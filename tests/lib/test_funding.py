"""Funding rates: Kraken Futures' history through real ccxt against the loopback fake, the
monthly lake partitions, and the per-bar charges aligned to a frame's bars."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import KRAKEN_MONTH_FIXTURE, kraken_market
from tradecore_lib.months import MINUTE_MS, Month
from tradecore_lib.sources.funding import (
    FundingDataError,
    MissingFundingError,
    fetch_funding_history,
    funding_key,
    funding_per_bar,
    funding_table,
    publish_funding_month,
    read_funding,
    validate_funding,
)
from tradecore_lib.sources.kraken_client import KrakenPermanentError

MONTH = Month.parse(KRAKEN_MONTH_FIXTURE)
HOUR_MS = 3_600_000


def fetch(server):
    return fetch_funding_history(kraken_market("kraken_futures"), now_ms=server.fake.now_ms,
                                 log=lambda _: None)


def test_history_is_kraken_relative_rate_per_period(make_kraken):
    server = make_kraken()
    history = fetch(server)
    truth = server.fake.funding
    served = truth.ts_ms < server.fake.now_ms
    np.testing.assert_array_equal(history.ts_ms, truth.ts_ms[served])
    # ccxt's fundingRate is Kraken's relativeFundingRate, never the absolute fundingRate
    np.testing.assert_array_equal(history.rate, truth.relative[served])
    assert history.metadata["requests"] == 2  # the market list and the whole history
    assert history.metadata["endpoint_kind"] == "historical funding rates"
    assert server.fake.requests["/derivatives/api/v4/historicalfundingrates"] == 1


def test_nothing_after_now_and_transient_faults_retried(make_kraken):
    now_ms = MONTH.start_ms + 10 * 86_400_000 + 30 * MINUTE_MS
    server = make_kraken(now_ms=now_ms)
    server.fake.inject("/derivatives/api/v4/historicalfundingrates", "http_502", "rate_limit",
                       "drop")
    history = fetch(server)
    assert history.metadata["retries"] == 3
    assert history.ts_ms[-1] == now_ms - 30 * MINUTE_MS  # the last full hour before now


def test_month_partition_written_atomically_with_exact_values(make_kraken, local_lake):
    server = make_kraken()
    market = kraken_market("kraken_futures")
    published = publish_funding_month(local_lake, market, MONTH, fetch(server))
    assert published.stored.key == ("kraken_futures/BTC-USD/funding/year=2024/month=03/"
                                    "part-0.parquet")
    truth = server.fake.funding
    inside = (truth.ts_ms >= MONTH.start_ms) & (truth.ts_ms < MONTH.end_ms)
    assert published.periods == inside.sum() == 31 * 24
    assert published.longest_spacing_hours == 1.0
    ts, rate, files = read_funding(local_lake, market, [MONTH])
    np.testing.assert_array_equal(ts, truth.ts_ms[inside])
    np.testing.assert_array_equal(rate, truth.relative[inside])
    assert files[0].sha256 == published.stored.sha256
    stored = local_lake.read_table(funding_key(market, MONTH))
    assert str(stored.schema.field("ts").type) == "timestamp[ms, tz=UTC]"
    assert str(stored.schema.field("rate").type) == "double"
    folder = Path(local_lake.uri(funding_key(market, MONTH))).parent
    assert [f.name for f in folder.iterdir()] == ["part-0.parquet"]  # no temporary left


def test_malformed_period_and_unknown_contract_are_permanent(make_kraken, monkeypatch):
    server = make_kraken()
    server.fake.funding.relative[5] = 3.0  # 300 % per period: a percent served as a fraction
    with pytest.raises(KrakenPermanentError, match=r"period 5 of .*within ±0.25"):
        fetch(server)
    original = server.fake.historical_funding_rates
    monkeypatch.setattr(server.fake, "historical_funding_rates",
                        lambda query: original({**query, "symbol": "PF_NOPE"}))
    with pytest.raises(KrakenPermanentError, match="400"):
        fetch(server)
    assert server.fake.requests["/derivatives/api/v4/historicalfundingrates"] == 2  # no retry


def test_only_a_venue_with_funding_is_asked():
    with pytest.raises(FundingDataError, match="kraken_spot.*publishes no funding history"):
        fetch_funding_history(kraken_market("kraken_spot"), now_ms=0, log=lambda _: None)


@pytest.mark.parametrize(("ts", "rate", "message"), [
    ([MONTH.start_ms - 1], [0.0], "row 0 .* outside the month"),
    ([MONTH.start_ms, MONTH.start_ms], [0.0, 0.0], "row 1 .* not after the row before"),
    ([MONTH.start_ms], [float("nan")], "row 0 .* not finite"),
    ([MONTH.start_ms], [-0.3], "row 0 .* beyond"),
])
def test_stored_table_rules(ts, rate, message):
    with pytest.raises(FundingDataError, match=f"m funding 2024-03: {message}"):
        validate_funding(funding_table(np.array(ts), np.array(rate)), "m", MONTH)


def test_missing_partition_names_the_asset(local_lake):
    market = kraken_market("kraken_futures")
    with pytest.raises(MissingFundingError, match=r"\['2024-03'\].*kraken_futures_btc_usd/funding"):
        read_funding(local_lake, market, [MONTH])


# ----------------------------------------------------------------- per-bar alignment
def test_each_period_lands_on_the_bar_it_falls_in():
    bars = np.array([0, 1, 2, 5, 6]) * MINUTE_MS  # minutes 3 and 4 missing
    times = np.array([-1, 0, 90_000, 3 * MINUTE_MS, 4 * MINUTE_MS + 5, 6 * MINUTE_MS + 59_999,
                      7 * MINUTE_MS])
    rates = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
    charges = funding_per_bar(bars, MINUTE_MS, times, rates)
    # before the first bar and after the last bar's end: not charged; in the gap: the bar
    # before it, whose position was held over the gap
    np.testing.assert_array_equal(charges, [2.0, 4.0, 8.0 + 16.0, 0.0, 32.0])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    missing_fraction=st.floats(0.0, 0.5),
    period_hours=st.sampled_from([1, 4, 8]),
    offset_ms=st.integers(0, HOUR_MS - 1),
)
def test_constant_long_of_notional_one_pays_the_months_rates(seed, missing_fraction,
                                                             period_hours, offset_ms):
    rng = np.random.default_rng(seed)
    minutes = np.arange(MONTH.start_ms, MONTH.end_ms, MINUTE_MS)
    keep = rng.random(minutes.size) >= missing_fraction
    keep[[0, -1]] = True  # the frame spans the month: its first and last minute are there
    bars = minutes[keep]
    times = np.arange(MONTH.start_ms + offset_ms, MONTH.end_ms, period_hours * HOUR_MS)
    rates = rng.normal(1e-5, 3e-5, times.size)
    charges = funding_per_bar(bars, MINUTE_MS, times, rates)
    notional = 1.0  # a constant long: qty * price held at 1 on every bar
    assert math.isclose(float((notional * charges).sum()), math.fsum(rates), rel_tol=1e-12,
                        abs_tol=1e-15)
    assert np.count_nonzero(charges) == np.unique(
        np.searchsorted(bars, times, side="right")).size
