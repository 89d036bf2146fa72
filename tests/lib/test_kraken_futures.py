"""Kraken Futures candles from the charts API, with real ccxt against the loopback fake."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import KRAKEN_MONTH_FIXTURE, kraken_market
from tests.fakes.kraken_server import python_candles
from tradecore_lib.candles import ts_millis, validate_candles
from tradecore_lib.months import Month
from tradecore_lib.sources import source_for
from tradecore_lib.sources.kraken_client import KrakenOptions, KrakenPermanentError, connect

MONTH = Month.parse(KRAKEN_MONTH_FIXTURE)


def fetch(lake, server):
    market = kraken_market("kraken_futures")
    return source_for(market, lake=lake).fetch_month(
        market, MONTH, now_ms=server.fake.now_ms, log=lambda _: None
    )


def assert_truth(table, server) -> None:
    rows = python_candles(server.fake.futures, MONTH.start_ms, MONTH.end_ms)
    assert table.num_rows == len(rows) > 10_000
    np.testing.assert_array_equal(ts_millis(table), [r["ts"] for r in rows])
    for name, key in (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c")):
        np.testing.assert_array_equal(table.column(name).to_numpy(), [r[key] / 10 for r in rows])
    np.testing.assert_array_equal(table.column("volume").to_numpy(), [r["v"] / 1e8 for r in rows])
    assert table.column("trades").null_count == table.num_rows  # the charts API has no count


def test_futures_urls_are_mapped_before_load_markets(make_kraken):
    server = make_kraken()
    client = connect("kraken_futures", KrakenOptions(rate_limit_ms=1), what="test")
    api = client.exchange.urls["api"]
    assert api["public"] == api["private"] == f"{server.url}/derivatives/api/"
    assert api["charts"] == f"{server.url}/api/charts/"
    assert api["history"] == f"{server.url}/api/history/"
    assert server.fake.requests["/derivatives/api/v3/instruments"] == 1
    assert "BTC/USD:USD" in client.exchange.markets


def test_full_month_paginated_with_zero_volume_fills_dropped(make_kraken, local_lake):
    server = make_kraken()
    result = fetch(local_lake, server)
    assert_truth(result.table, server)
    validate_candles(result.table, "kraken_futures_btc_usd", MONTH)
    meta = result.metadata
    assert meta["endpoint_kind"] == "futures charts" and meta["source"] == "kraken_futures"
    # 44,640 minutes in windows of 2000 candles, plus the market list.
    assert meta["requests"] == 23 + 1 and meta["retries"] == 0


def test_faults_survived(make_kraken, local_lake):
    server = make_kraken()
    server.fake.inject("/derivatives/api/v3/instruments", "http_520")
    server.fake.fault_cycle = ("rate_limit", "http_429", "http_502", "drop", "truncate", "busy")
    server.fake.fault_every = 2
    result = fetch(local_lake, server)
    assert result.metadata["retries"] == server.fake.faults_served.total() >= 12
    assert_truth(result.table, server)


def test_gap_kept_as_gap(make_kraken, local_lake):
    start = MONTH.start_ms + 20 * 86_400_000
    server = make_kraken(gaps_ms=((start, start + 6 * 3_600_000),))
    ts = ts_millis(fetch(local_lake, server).table)
    assert not ((ts >= start) & (ts < start + 6 * 3_600_000)).any()
    assert np.diff(ts).max() >= 6 * 3_600_000


def test_malformed_candle_rejected(make_kraken, local_lake, monkeypatch):
    server = make_kraken()
    original = server.fake.charts

    def charts(symbol, query):
        status, body = original(symbol, query)
        if body["candles"]:
            body["candles"][3]["high"] = "-1.5"
        return status, body

    monkeypatch.setattr(server.fake, "charts", charts)
    with pytest.raises(KrakenPermanentError, match="kraken_futures_btc_usd 2024-03.*candle row 3"):
        fetch(local_lake, server)
