"""Kraken spot rebuilt from trades, with real ccxt against the loopback fake Kraken."""

from __future__ import annotations

import dataclasses
import json

import ccxt
import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.parquet as pq
import pytest

from tests.conftest import KRAKEN_MONTH_FIXTURE, kraken_market
from tests.fakes.kraken_server import FAULTS, python_candles
from tradecore_lib.candles import CANDLE_SCHEMA, gap_report, ts_millis
from tradecore_lib.ingest import ingest_month
from tradecore_lib.lake import Lake, candle_key
from tradecore_lib.months import MINUTE_MS, Month
from tradecore_lib.sources import source_for
from tradecore_lib.sources.kraken_client import (
    KrakenPermanentError,
    KrakenUnavailableError,
)
from tradecore_lib.sources.kraken_spot import aggregate_trades

MONTH = Month.parse(KRAKEN_MONTH_FIXTURE)
STAGING = f"staging/kraken_spot/BTC-USD/{MONTH}/"


def truth(server, end_ms: int = MONTH.end_ms) -> pa.Table:
    """The month's candles from the fake's trades, by the fake's own integer arithmetic."""
    rows = python_candles(server.fake.spot, MONTH.start_ms, end_ms)
    return pa.table(
        {
            "ts": pa.array([r["ts"] for r in rows], pa.int64()).cast(pa.timestamp("ms", "UTC")),
            **{name: pa.array([r[k] / 10 for r in rows], pa.float64())
               for name, k in (("open", "o"), ("high", "h"), ("low", "l"), ("close", "c"))},
            "volume": pa.array([r["v"] / 1e8 for r in rows], pa.float64()),
            "trades": pa.array([r["n"] for r in rows], pa.int64()),
        },
        schema=CANDLE_SCHEMA,
    )


def fetch(lake: Lake, market, now_ms: int, logs: list[str] | None = None):
    return source_for(market, lake=lake).fetch_month(
        market, MONTH, now_ms=now_ms, log=(logs.append if logs is not None else lambda _: None)
    )


def assert_same(table: pa.Table, expected: pa.Table) -> None:
    assert table.num_rows == expected.num_rows
    for name in CANDLE_SCHEMA.names:
        np.testing.assert_array_equal(
            table.column(name).to_numpy(), expected.column(name).to_numpy(), err_msg=name
        )


def test_full_month_rebuilt_exactly(make_kraken, local_lake):
    server = make_kraken()
    logs: list[str] = []
    result = fetch(local_lake, kraken_market("kraken_spot"), server.fake.now_ms, logs)
    expected = truth(server)
    assert expected.num_rows > 3000
    assert_same(result.table, expected)
    meta = result.metadata
    assert meta["source"] == "kraken_spot" and meta["endpoint_kind"] == "trades rebuild"
    assert meta["download_complete"] and not meta["resumed_from_checkpoint"]
    assert meta["trades_read"] == int(pa.compute.sum(expected.column("trades")).as_py())
    assert meta["requests"] == server.fake.requests.total() and meta["retries"] == 0
    assert meta["ccxt_version"] == ccxt.__version__
    assert any("% (" in line and "min/s" in line for line in logs)


def test_equal_to_kraken_ohlc_where_both_exist(make_kraken, local_lake):
    # The venue's present lies inside the month, so its 720-candle OHLC window does too.
    now_ms = MONTH.start_ms + 10 * 86_400_000 + 7 * MINUTE_MS + 30_000
    server = make_kraken(now_ms=now_ms)
    result = fetch(local_lake, kraken_market("kraken_spot"), now_ms)
    exchange = ccxt.kraken({"rateLimit": 1})
    exchange.urls["api"]["public"] = server.url
    ohlc = np.array(exchange.fetch_ohlcv("BTC/USD", "1m"), dtype=np.float64)
    assert len(ohlc) == 720
    ohlc = ohlc[:-1]  # the minute in progress
    ohlc = ohlc[ohlc[:, 5] > 0]  # Kraken's zero-count fills of minutes without trades
    ts = ts_millis(result.table)
    rebuilt = result.table.filter(pa.array(ts >= ohlc[0, 0]))
    assert rebuilt.num_rows == len(ohlc) > 50
    np.testing.assert_array_equal(ts_millis(rebuilt), ohlc[:, 0].astype(np.int64))
    for i, name in enumerate(("open", "high", "low", "close", "volume"), start=1):
        np.testing.assert_array_equal(rebuilt.column(name).to_numpy(), ohlc[:, i], err_msg=name)
    assert result.metadata["ohlc_crosscheck_minutes"] == len(ohlc)
    assert result.metadata["ohlc_crosscheck_mismatches"] == 0
    assert_same(result.table, truth(server, now_ms - now_ms % MINUTE_MS))


def test_faults_survived_without_lost_or_duplicated_minutes(make_kraken, local_lake):
    server = make_kraken()
    server.fake.inject("/0/public/Assets", "http_502", "drop")
    server.fake.inject("/0/public/AssetPairs", "rate_limit")
    server.fake.fault_cycle = FAULTS
    server.fake.fault_every = 2
    result = fetch(local_lake, kraken_market("kraken_spot"), server.fake.now_ms)
    assert set(server.fake.faults_served) == set(FAULTS)
    assert result.metadata["retries"] == server.fake.faults_served.total()
    assert_same(result.table, truth(server))


@pytest.mark.parametrize("inclusive_since, with_ids", [(False, True), (True, False)])
def test_cursor_semantics_and_old_row_format(make_kraken, local_lake, inclusive_since, with_ids):
    server = make_kraken()
    server.fake.inclusive_since = inclusive_since
    server.fake.with_trade_ids = with_ids
    result = fetch(local_lake, kraken_market("kraken_spot"), server.fake.now_ms)
    assert_same(result.table, truth(server))


class _Killed(BaseException):
    """Stands for SIGTERM/KeyboardInterrupt: not an Exception, so nothing retries it."""


def _kill_trades_after(monkeypatch, calls: int) -> None:
    original = ccxt.kraken.fetch_trades
    seen = {"n": 0}

    def fetch_trades(self, *args, **kwargs):
        seen["n"] += 1
        if seen["n"] > calls:
            raise _Killed(f"killed at Trades request {seen['n']}")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(ccxt.kraken, "fetch_trades", fetch_trades)


def _kill_state_write_after(monkeypatch, writes: int) -> None:
    original = Lake.write_bytes
    seen = {"n": 0}

    def write_bytes(self, key, data):
        if key.endswith("state.json"):
            seen["n"] += 1
            if seen["n"] > writes:  # the chunk is written, the state pointing at it is not
                raise _Killed("killed between chunk and state")
        return original(self, key, data)

    monkeypatch.setattr(Lake, "write_bytes", write_bytes)


@pytest.mark.parametrize("kill", ["mid_page", "mid_checkpoint"])
def test_resume_after_kill_gives_the_same_candles(make_kraken, tmp_path, monkeypatch, kill):
    server = make_kraken()
    market = kraken_market("kraken_spot")
    uninterrupted = fetch(Lake(str(tmp_path / "a")), market, server.fake.now_ms)
    full_requests = server.fake.requests["/0/public/Trades"]

    lake = Lake(str(tmp_path / "b"))
    with monkeypatch.context() as patch:
        if kill == "mid_page":
            _kill_trades_after(patch, 8)
        else:
            _kill_state_write_after(patch, 2)
        with pytest.raises(_Killed):
            fetch(lake, market, server.fake.now_ms)
    state = json.loads(lake.read_bytes(STAGING + "state.json"))  # survived the kill
    assert state["trades"] > 0 and not state["complete"]
    assert not lake.exists(candle_key(market, MONTH))

    before = server.fake.requests["/0/public/Trades"]
    resumed = fetch(lake, market, server.fake.now_ms)
    assert resumed.metadata["resumed_from_checkpoint"]
    assert server.fake.requests["/0/public/Trades"] - before < full_requests
    assert resumed.table.equals(uninterrupted.table)
    assert_same(resumed.table, truth(server))

    # A complete checkpoint serves a re-materialization without a single request.
    again = fetch(lake, market, server.fake.now_ms)
    assert again.metadata["requests"] == 0 and again.table.equals(uninterrupted.table)


def test_current_month_refresh_continues_from_the_cursor(make_kraken, local_lake):
    first_now = MONTH.start_ms + 12 * 86_400_000 + 123_456
    server = make_kraken(now_ms=first_now)
    market = kraken_market("kraken_spot")
    first = fetch(local_lake, market, first_now)
    assert not first.metadata["download_complete"]
    assert_same(first.table, truth(server, first_now - first_now % MINUTE_MS))
    first_pages = server.fake.requests["/0/public/Trades"]

    later_now = first_now + 2 * 86_400_000
    server.fake.now_ms = later_now
    second = fetch(local_lake, market, later_now)
    assert_same(second.table, truth(server, later_now - later_now % MINUTE_MS))
    # Two more days of trades, not twelve again.
    assert server.fake.requests["/0/public/Trades"] - first_pages < first_pages / 2

    server.fake.now_ms = MONTH.end_ms + 3_600_000
    final = fetch(local_lake, market, server.fake.now_ms)
    assert final.metadata["download_complete"]
    assert_same(final.table, truth(server))


def test_gap_kept_as_gap(make_kraken, local_lake):
    day_10 = MONTH.start_ms + 9 * 86_400_000
    gap = (day_10 + 3_600_000, day_10 + 5 * 3_600_000)
    server = make_kraken(gaps_ms=(gap,))
    result = fetch(local_lake, kraken_market("kraken_spot"), server.fake.now_ms)
    ts = ts_millis(result.table)
    assert not ((ts >= gap[0]) & (ts < gap[1])).any()
    report = gap_report(ts, MONTH)
    assert report.longest_gap_minutes >= 240
    assert_same(result.table, truth(server))


def test_malformed_row_rejected_with_nothing_written(make_kraken, local_lake):
    server = make_kraken()
    spot = server.fake.spot
    bad = int(np.searchsorted(spot.time_e4, (MONTH.start_ms + 15 * 86_400_000) * 10))
    server.fake.malformed_trade = bad
    market = kraken_market("kraken_spot")
    with pytest.raises(KrakenPermanentError) as failure:
        ingest_month(local_lake, source_for(market, lake=local_lake), market, MONTH,
                     now_ms=server.fake.now_ms, log=lambda _: None)
    message = str(failure.value)
    assert "kraken_spot_btc_usd 2024-03" in message and "malformed payload" in message
    assert "12x45.6" in message and "trade row" in message
    assert not local_lake.exists(candle_key(market, MONTH))
    # The checkpoint keeps the trades before the bad page and nothing of it.
    state = json.loads(local_lake.read_bytes(STAGING + "state.json"))
    assert state["trades"] > 0 and not state["complete"]
    staged = pa.concat_tables(
        [pq.read_table(pa.BufferReader(local_lake.read_bytes(STAGING + name)))
         for name in state["chunks"]]
    )
    assert pa.compute.max(staged.column("time_us")).as_py() < int(spot.time_e4[bad]) * 100


def test_retry_budget_exhausted_fails_clearly_and_keeps_the_checkpoint(make_kraken, local_lake):
    server = make_kraken()
    market = kraken_market("kraken_spot", retry_attempts=3, checkpoint_every_pages=1)
    server.fake.fault_every = 1
    server.fake.fault_cycle = ("http_520", "unavailable", "drop")
    with pytest.raises(KrakenUnavailableError, match="kraken_spot_btc_usd 2024-03.*3 attempts"):
        fetch(local_lake, market, server.fake.now_ms)
    server.fake.fault_every = 0
    assert_same(fetch(local_lake, market, server.fake.now_ms).table, truth(server))


def test_unknown_pair_fails_at_once(make_kraken, local_lake):
    server = make_kraken()
    market = kraken_market("kraken_spot").model_copy(update={"symbol": "DOGE/USD"})
    with pytest.raises(KrakenPermanentError, match="no market 'DOGE/USD'"):
        fetch(local_lake, market, server.fake.now_ms)
    assert "/0/public/Trades" not in server.fake.requests


def test_proxy_credentials_never_reach_messages_or_metadata(make_kraken, local_lake, monkeypatch):
    server = make_kraken()
    url = server.url.replace("http://", "http://trader:s3cret@")
    monkeypatch.setenv("TRADECORE_KRAKEN_SPOT_URL", url + "/")
    server.fake.inject("/0/public/Trades", "http_502")
    market = kraken_market("kraken_spot")
    result = fetch(local_lake, market, server.fake.now_ms)
    assert "s3cret" not in json.dumps(result.metadata) and result.metadata["retries"] == 1
    monkeypatch.setattr(ccxt.kraken, "fetch_trades", lambda *a, **k: (_ for _ in ()).throw(
        ccxt.ExchangeNotAvailable(f"kraken GET {url}/0/public/Trades 404 Not Found")))
    with pytest.raises(KrakenPermanentError) as failure:
        fetch(Lake(str(local_lake.root) + "2"), market, server.fake.now_ms)
    assert "s3cret" not in str(failure.value) and "***@127.0.0.1" in str(failure.value)


def test_aggregation_keeps_tie_order_and_leaves_empty_minutes_out():
    t0 = MONTH.start_ms * 1000
    time_us = np.array([t0 + 5, t0 + 5, t0 + 59_999_999, t0 + 180_000_000], dtype=np.int64)
    price = np.array([10.0, 12.0, 9.0, 11.0])
    amount = np.array([0.1, 0.2, 0.3, 0.4])
    table = aggregate_trades(time_us, price, amount, start_ms=MONTH.start_ms,
                             end_ms=MONTH.end_ms, volume_decimals=8)
    assert ts_millis(table).tolist() == [MONTH.start_ms, MONTH.start_ms + 3 * MINUTE_MS]
    assert table.column("open").to_pylist() == [10.0, 11.0]
    assert table.column("close").to_pylist() == [9.0, 11.0]
    assert table.column("high").to_pylist() == [12.0, 11.0]
    assert table.column("low").to_pylist() == [9.0, 11.0]
    assert table.column("volume").to_pylist() == [0.6, 0.4]
    assert table.column("trades").to_pylist() == [3, 1]


def test_burst_whose_ids_cross_a_digit_keeps_kraken_order(make_kraken, local_lake):
    """ccxt sorts a page by (ms, id as a string), putting trade 1000 before 998; the
    rebuild must keep Kraken's order (close = the burst's last trade) and the right cursor."""
    server = make_kraken()
    spot = server.fake.spot
    burst = slice(990, 1010)  # a page of 500 ends inside it at trade id 1000
    time_e4 = spot.time_e4.copy()
    time_e4[burst] = time_e4[burst.start]
    price_e1 = spot.price_e1.copy()
    price_e1[burst] = 420_000 + np.arange(20)  # every trade of the burst has its own price
    server.fake.spot = dataclasses.replace(spot, time_e4=time_e4, price_e1=price_e1)
    result = fetch(local_lake, kraken_market("kraken_spot"), server.fake.now_ms)
    assert_same(result.table, truth(server))
