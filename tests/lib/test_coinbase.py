"""Coinbase spot candles, with real ccxt against the loopback fake in Coinbase's wire format:
exact candles whichever way ``end`` is read, under every fault, across a kill and a refresh."""

from __future__ import annotations

import json
import math

import ccxt
import dagster as dg
import numpy as np
import pytest

from tests.conftest import COINBASE_MONTH_FIXTURE, coinbase_market
from tests.fakes.coinbase_server import FAULTS
from tradecore_lib.candles import ts_millis, validate_candles
from tradecore_lib.lake import Lake, candle_key
from tradecore_lib.markets import get_market
from tradecore_lib.months import MINUTE_MS, Month
from tradecore_lib.sources import source_for
from tradecore_lib.sources.coinbase import (
    CoinbasePermanentError,
    CoinbaseSpotSource,
    CoinbaseUnavailableError,
    connect,
)
from tradecore_lib.sources.coinbase_options import CoinbaseOptions
from tradecore_pipelines.assets.candles import build_candles_asset

MONTH = Month.parse(COINBASE_MONTH_FIXTURE)
STAGING = f"staging/coinbase_spot/BTC-USD/{MONTH}/"
MARKET_LOAD = ("/v2/currencies", "/v2/currencies/crypto", "/v2/exchange-rates",
               "/api/v3/brokerage/market/products")  # products twice: spot, then FUTURE


def fetch(lake, server, market=None, now_ms=None):
    market = market or coinbase_market()
    return source_for(market, lake=lake).fetch_month(
        market, MONTH, now_ms=now_ms or server.fake.now_ms, log=lambda _: None)


def assert_truth(table, server, product="BTC-USD", end_ms=MONTH.end_ms) -> None:
    """The table is exactly the fake's candles of the month before ``end_ms``."""
    c = server.fake.candles[product]
    keep = (c.ts_ms >= MONTH.start_ms) & (c.ts_ms < end_ms)
    assert table.num_rows == int(keep.sum())
    np.testing.assert_array_equal(ts_millis(table), c.ts_ms[keep])
    for name, cents in (("open", c.open_c), ("high", c.high_c), ("low", c.low_c),
                        ("close", c.close_c)):
        np.testing.assert_array_equal(table.column(name).to_numpy(), cents[keep] / 100)
    np.testing.assert_array_equal(table.column("volume").to_numpy(), c.volume_e8[keep] / 1e8)
    assert table.column("trades").null_count == table.num_rows  # Coinbase serves no count


def test_the_url_is_mapped_before_the_markets_load(make_coinbase):
    server = make_coinbase()
    client = connect(CoinbaseOptions(rate_limit_ms=1), what="test")
    assert client.exchange.urls["api"]["rest"] == server.url
    assert {path: server.fake.requests[path] for path in MARKET_LOAD} == {
        "/v2/currencies": 1, "/v2/currencies/crypto": 1, "/v2/exchange-rates": 1,
        "/api/v3/brokerage/market/products": 2}
    assert {"BTC/USD", "ETH/USD", "SOL/USD"} <= set(client.exchange.markets)
    assert client.exchange.markets["BTC/USD"]["id"] == "BTC-USD"


@pytest.mark.parametrize("inclusive_end", [True, False])
def test_a_month_is_exact_in_windows_whichever_way_end_is_read(make_coinbase, local_lake,
                                                              inclusive_end):
    server = make_coinbase()
    server.fake.inclusive_end = inclusive_end
    result = fetch(local_lake, server)
    assert_truth(result.table, server)
    validate_candles(result.table, "coinbase_spot_btc_usd", MONTH)
    windows = math.ceil(MONTH.minutes / 300)  # ccxt keeps 300 candles of an answer at most
    assert server.fake.candle_requests == windows
    assert all((end - start) // 60 <= 300 for start, end in server.fake.candle_windows)
    meta = result.metadata
    assert meta["source"] == "coinbase_spot" and meta["candle_pages"] == windows
    assert meta["requests"] == windows + 5 and meta["retries"] == 0  # + the market list
    assert meta["download_complete"] and not meta["resumed_from_checkpoint"]


def test_every_fault_is_survived_without_a_lost_or_doubled_minute(make_coinbase, local_lake):
    server = make_coinbase()
    server.fake.inject("/v2/currencies", "http_429_html", "internal")
    server.fake.inject("/api/v3/brokerage/market/products", "unavailable")
    server.fake.fault_cycle, server.fake.fault_every = FAULTS, 2
    result = fetch(local_lake, server)
    assert set(server.fake.faults_served) == set(FAULTS)
    assert result.metadata["retries"] == server.fake.faults_served.total() >= 70
    assert_truth(result.table, server)


class _Killed(BaseException):
    """Stands for SIGTERM/KeyboardInterrupt: not an Exception, so nothing retries it."""


@pytest.mark.parametrize("kill", ["mid_download", "between_candles_and_state"])
def test_a_killed_download_resumes_to_the_same_candles(make_coinbase, tmp_path, monkeypatch,
                                                       kill):
    server = make_coinbase()
    uninterrupted = fetch(Lake(str(tmp_path / "a")), server)
    full_requests = server.fake.candle_requests

    lake = Lake(str(tmp_path / "b"))
    with monkeypatch.context() as patch:
        if kill == "mid_download":
            original = ccxt.coinbase.fetch_ohlcv
            calls = {"n": 0}

            def fetch_ohlcv(self, *args, **kwargs):
                calls["n"] += 1
                if calls["n"] > 45:
                    raise _Killed("killed at candles request 46")
                return original(self, *args, **kwargs)

            patch.setattr(ccxt.coinbase, "fetch_ohlcv", fetch_ohlcv)
        else:
            original_write = Lake.write_bytes
            states = {"n": 0}

            def write_bytes(self, key, data):
                if key.endswith("state.json"):
                    states["n"] += 1
                    if states["n"] > 3:  # the candles are written, the state after them not
                        raise _Killed("killed between candles and state")
                return original_write(self, key, data)

            patch.setattr(Lake, "write_bytes", write_bytes)
        with pytest.raises(_Killed):
            fetch(lake, server)
    state = json.loads(lake.read_bytes(STAGING + "state.json"))  # survived the kill
    assert state["cursor_ms"] > MONTH.start_ms and not state["complete"]

    before = server.fake.candle_requests
    resumed = fetch(lake, server)
    assert resumed.metadata["resumed_from_checkpoint"]
    assert server.fake.candle_requests - before < full_requests
    assert resumed.table.equals(uninterrupted.table)
    assert_truth(resumed.table, server)

    # A complete checkpoint serves a re-materialization without a single request.
    again = fetch(lake, server)
    assert again.metadata["requests"] == 0 and again.table.equals(uninterrupted.table)


def test_the_current_month_refresh_continues_from_the_cursor(make_coinbase, local_lake):
    first_now = MONTH.start_ms + 12 * 86_400_000 + 123_456
    server = make_coinbase(now_ms=first_now)
    server.fake.publish_lag_ms = 150_000  # the last closed minutes are not served yet
    first = fetch(local_lake, server)
    assert_truth(first.table, server, end_ms=first_now - first_now % MINUTE_MS - 3 * MINUTE_MS)
    assert not first.metadata["download_complete"]

    later = first_now + 3 * 86_400_000
    server.fake.now_ms = later
    server.fake.publish_lag_ms = 0
    before = server.fake.candle_requests
    second = fetch(local_lake, server)
    # the minutes missing from the first read are there now: the refresh read one window back
    assert_truth(second.table, server, end_ms=later - later % MINUTE_MS)
    assert server.fake.candle_requests - before == math.ceil((3 * 1440 + 300) / 300)


def test_a_gap_stays_a_gap(make_coinbase, local_lake):
    start = MONTH.start_ms + 20 * 86_400_000
    server = make_coinbase(gaps_ms=((start, start + 6 * 3_600_000),))
    ts = ts_millis(fetch(local_lake, server).table)
    assert not ((ts >= start) & (ts < start + 6 * 3_600_000)).any()
    assert np.diff(ts).max() >= 6 * 3_600_000


def test_a_malformed_candle_is_refused_by_its_time(make_coinbase, local_lake):
    server = make_coinbase()
    server.fake.malformed_at = MONTH.start_ms + 10 * 86_400_000
    with pytest.raises(CoinbasePermanentError, match="malformed payload") as failure:
        fetch(local_lake, server)
    assert not failure.value.retryable


def test_an_unknown_product_and_a_refused_request_fail_at_once(make_coinbase, local_lake,
                                                               monkeypatch):
    server = make_coinbase()
    with pytest.raises(CoinbasePermanentError, match="no market 'DOGE/USD'"):
        fetch(local_lake, server, coinbase_market("DOGE/USD"))
    assert server.fake.candle_requests == 0

    # Coinbase's HTTP 400 INVALID_ARGUMENT (ccxt: BadRequest) is not retried.
    monkeypatch.setattr(server.fake, "candles_of", lambda *_: (400, {
        "error": "INVALID_ARGUMENT", "error_details": "number of candles requested should "
        "be less than 350", "message": "number of candles requested should be less than 350"}))
    with pytest.raises(CoinbasePermanentError, match="INVALID_ARGUMENT"):
        fetch(local_lake, server)
    assert server.fake.requests[
        "/api/v3/brokerage/market/products/BTC-USD/candles"] == 1


def test_an_outage_ends_at_the_retry_budget_and_keeps_the_checkpoint(make_coinbase, local_lake):
    server = make_coinbase()
    market = coinbase_market(retry_attempts=4)
    fetch(local_lake, server, market, now_ms=MONTH.start_ms + 2 * 86_400_000)  # a checkpoint
    server.fake.fault_cycle, server.fake.fault_every = ("unavailable",), 1
    with pytest.raises(CoinbaseUnavailableError, match="still failing after 4 attempt") as failure:
        fetch(local_lake, server, market)
    assert failure.value.retryable and "UNAVAILABLE" in str(failure.value)
    assert "resume from the checkpoint" in str(failure.value)
    assert json.loads(local_lake.read_bytes(STAGING + "state.json"))["cursor_ms"] == (
        MONTH.start_ms + 2 * 86_400_000)


def test_proxy_credentials_reach_no_message_or_metadata(make_coinbase, local_lake, monkeypatch):
    server = make_coinbase()
    url = server.url.replace("http://", "http://trader:s3cret@")
    monkeypatch.setenv("TRADECORE_COINBASE_URL", url + "/")
    server.fake.inject("/api/v3/brokerage/market/products/BTC-USD/candles", "http_502")
    result = fetch(local_lake, server)
    assert "s3cret" not in json.dumps(result.metadata) and result.metadata["retries"] == 1
    server.fake.fault_cycle, server.fake.fault_every = ("internal",), 1
    with pytest.raises(CoinbaseUnavailableError) as failure:
        fetch(Lake(str(local_lake.root) + "2"), server, coinbase_market(retry_attempts=2))
    assert "s3cret" not in str(failure.value) and "***@127.0.0.1" in str(failure.value)


def test_the_listed_markets_and_the_candles_asset(make_coinbase, lake_resource):
    for name, pair in (("coinbase_spot_btc_usd", "BTC-USD"), ("coinbase_spot_eth_usd", "ETH-USD"),
                       ("coinbase_spot_sol_usd", "SOL-USD")):
        listed = get_market(name)
        assert listed.venue == "coinbase_spot" and listed.pair_dir == pair
        assert isinstance(source_for(listed, lake=Lake("/tmp/unused")), CoinbaseSpotSource)
    server = make_coinbase()
    market = coinbase_market("ETH/USD")
    candles = build_candles_asset(market)
    with dg.instance_for_test() as instance:
        result = dg.materialize([candles], instance=instance, resources={"lake": lake_resource},
                                partition_key=f"{COINBASE_MONTH_FIXTURE}-01")
    assert result.success
    lake = lake_resource.get_lake()
    key = candle_key(market, MONTH)
    assert key == "coinbase_spot/ETH-USD/1m/year=2024/month=03/part-0.parquet"
    assert_truth(lake.read_table(key), server, product="ETH-USD")
    metadata = result.asset_materializations_for_node(candles.op.name)[0].metadata
    assert metadata["source"].value == "coinbase_spot"
