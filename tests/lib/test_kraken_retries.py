"""Retries only where they can help: a 404 fails at once (no Dagster retry either); an outage
ends at the elapsed-time budget. Clocks are the test's own, never the wall clock."""

from __future__ import annotations

import dagster as dg
import pytest

from tests.conftest import kraken_market
from tradecore_lib.sources.kraken_client import (
    KrakenOptions,
    KrakenUnavailableError,
    connect,
)
from tradecore_pipelines.assets.candles import build_candles_asset


class FakeClock:
    """Monotonic seconds that move only when the client sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_permanent_outage_stops_at_the_elapsed_budget(make_kraken):
    server = make_kraken()
    # Attempts would allow hours of backoff; the time budget ends it.
    options = KrakenOptions(rate_limit_ms=1, retry_attempts=10_000, retry_base_delay_s=1.0,
                            retry_max_delay_s=60.0)
    client = connect("kraken_spot", options, what="kraken_spot_btc_usd 2024-03")
    clock = FakeClock()
    client.clock, client.sleep = clock, clock.sleep
    server.fake.fault_cycle, server.fake.fault_every = ("http_502",), 1
    with pytest.raises(KrakenUnavailableError) as failure:
        client.call("kraken_spot_btc_usd 2024-03: Trades", client.exchange.fetch_trades,
                    "BTC/USD")
    # the last wait is cut to the budget
    assert clock.now == pytest.approx(KrakenOptions().retry_budget_s)
    attempts = len(clock.sleeps) + 1
    assert server.fake.requests["/0/public/Trades"] == attempts < 10_000
    message = str(failure.value)
    assert f"still failing after {attempts} attempt(s) over 120.0 s" in message
    assert "(limits: 10000 attempts, 120 s)" in message and "502" in message
    assert failure.value.retryable


def test_a_404_makes_one_request_and_no_dagster_retry(make_kraken, monkeypatch, lake_resource):
    server = make_kraken()
    monkeypatch.setenv("TRADECORE_KRAKEN_SPOT_URL", f"{server.url}/wrongpath")
    market = kraken_market("kraken_spot")
    candles = build_candles_asset(market)
    assert candles.op.retry_policy is not None  # live markets carry one: it must not apply
    with dg.instance_for_test() as instance:
        result = dg.materialize([candles], instance=instance, resources={"lake": lake_resource},
                                partition_key="2024-03-01", raise_on_error=False)
    assert not result.success
    assert sum(server.fake.requests.values()) == 1
    assert [e.event_type_value for e in result.all_events
            if e.event_type_value in ("STEP_UP_FOR_RETRY", "STEP_RESTARTED")] == []
    failure = result.failure_data_for_node(candles.op.name).user_failure_data
    assert "kraken_spot_btc_usd 2024-03: load markets" in failure.description
    assert "404" in failure.description
    assert failure.metadata["retryable"].value is False
