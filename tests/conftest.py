"""Shared fixtures: temporary lakes (local and S3 on loopback), markets, Dagster resources."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import boto3
import pytest
from dagster_aws.s3 import S3Resource

from tradecore_lib.lake import Lake, S3Options
from tradecore_lib.markets import Market, get_market
from tradecore_pipelines.resources import LakeResource

S3_BUCKET = "tradecore-test"
S3_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API (moto's standalone server) on loopback, with an empty test bucket."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", **S3_CREDENTIALS
    ).create_bucket(Bucket=S3_BUCKET)
    yield endpoint
    server.stop()


@pytest.fixture
def s3_lake(s3_endpoint: str, request: pytest.FixtureRequest) -> Lake:
    """A lake under a fresh prefix of the loopback S3 bucket."""
    prefix = request.node.name.replace("[", "_").replace("]", "_")
    return Lake(
        f"s3://{S3_BUCKET}/{prefix}",
        S3Options(
            endpoint_url=s3_endpoint,
            region="us-east-1",
            access_key=S3_CREDENTIALS["aws_access_key_id"],
            secret_key=S3_CREDENTIALS["aws_secret_access_key"],
        ),
    )


@pytest.fixture
def local_lake(tmp_path) -> Lake:
    return Lake(str(tmp_path / "lake"))


@pytest.fixture
def synthetic_market() -> Market:
    return get_market("synthetic_btc_usd")


@pytest.fixture
def lake_resource(tmp_path) -> LakeResource:
    """A Dagster lake resource over a temporary local folder."""
    return LakeResource(
        root=str(tmp_path / "lake"),
        manifests_dir=str(tmp_path / "manifests"),
        s3=S3Resource(),
    )


# ----------------------------------------------------------------- Kraken (loopback fake)
KRAKEN_MONTH_FIXTURE = "2024-03"
_FAST_KRAKEN_OPTIONS = {
    "rate_limit_ms": 1,
    "timeout_ms": 5000,
    "retry_base_delay_s": 0.001,
    "retry_max_delay_s": 0.005,
    "trades_page_size": 500,
    "checkpoint_every_pages": 3,
}


@pytest.fixture
def make_kraken(monkeypatch: pytest.MonkeyPatch):
    """Factory: start a loopback fake Kraken and point both Kraken URL variables at it.

    ``make_kraken(gaps_ms=..., now_ms=...)`` generates a sparse, seeded trade history from a
    day before to a day after :data:`KRAKEN_MONTH_FIXTURE` (a few thousand spot trades).
    """
    from tests.fakes.kraken_server import FakeKraken, KrakenHandler, generate_trades
    from tests.fakes.loopback import LoopbackServer
    from tradecore_lib.months import Month

    servers = []
    month = Month.parse(KRAKEN_MONTH_FIXTURE)
    day = 86_400_000

    def start(*, gaps_ms=(), now_ms=None, seed=11):
        span = (month.start_ms - day, month.end_ms + day)
        spot = generate_trades(seed, *span, mean_gap_s=400.0, gaps_ms=gaps_ms)
        futures = generate_trades(seed + 1, *span, mean_gap_s=150.0, gaps_ms=gaps_ms)
        fake = FakeKraken(spot, futures, now_ms=now_ms or span[1])
        server = LoopbackServer(fake, KrakenHandler).__enter__()
        servers.append(server)
        monkeypatch.setenv("TRADECORE_KRAKEN_SPOT_URL", server.url)
        monkeypatch.setenv("TRADECORE_KRAKEN_FUTURES_URL", server.url)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def kraken_market(venue: str, **options) -> Market:
    """A Kraken market with options that keep tests fast (tiny rate limit and backoff)."""
    from tradecore_lib.months import Month

    symbol = "BTC/USD" if venue == "kraken_spot" else "BTC/USD:USD"
    return Market(
        name=f"{venue}_btc_usd",
        venue=venue,
        symbol=symbol,
        first_month=Month(2024, 1),
        feature_preset="default",
        train_preset="cpu-smoke",
        enabled=True,
        source={**_FAST_KRAKEN_OPTIONS, **options},
    )


# ----------------------------------------------------------------- Coinbase (loopback fake)
COINBASE_MONTH_FIXTURE = "2024-03"
_FAST_COINBASE_OPTIONS = {
    "rate_limit_ms": 1,
    "timeout_ms": 5000,
    "retry_base_delay_s": 0.001,
    "retry_max_delay_s": 0.005,
    "checkpoint_every_pages": 10,
}


@pytest.fixture
def make_coinbase(monkeypatch: pytest.MonkeyPatch):
    """Factory: start a loopback fake Coinbase and point ``TRADECORE_COINBASE_URL`` at it.

    ``make_coinbase(gaps_ms=..., now_ms=...)`` generates seeded BTC/ETH/SOL candles from a day
    before to a day after :data:`COINBASE_MONTH_FIXTURE`, a tenth of the minutes empty.
    """
    from tests.fakes.coinbase_server import CoinbaseHandler, FakeCoinbase, generate_candles
    from tests.fakes.loopback import LoopbackServer
    from tradecore_lib.months import Month

    servers = []
    month = Month.parse(COINBASE_MONTH_FIXTURE)
    day = 86_400_000

    def start(*, gaps_ms=(), now_ms=None, seed=21):
        span = (month.start_ms - day, month.end_ms + day)
        candles = {product: generate_candles(seed + i, *span, level_cents=level, gaps_ms=gaps_ms)
                   for i, (product, level) in enumerate(
                       (("BTC-USD", 6_200_000), ("ETH-USD", 340_000), ("SOL-USD", 13_000)))}
        fake = FakeCoinbase(candles, now_ms=now_ms or span[1])
        server = LoopbackServer(fake, CoinbaseHandler).__enter__()
        servers.append(server)
        monkeypatch.setenv("TRADECORE_COINBASE_URL", server.url)
        return server

    yield start
    for server in servers:
        server.__exit__(None, None, None)


def coinbase_market(symbol: str = "BTC/USD", **options) -> Market:
    """A Coinbase market with options that keep tests fast (tiny rate limit and backoff)."""
    from tradecore_lib.months import Month

    base, quote = symbol.lower().split("/")
    return Market(
        name=f"coinbase_spot_{base}_{quote}",
        venue="coinbase_spot",
        symbol=symbol,
        first_month=Month(2024, 1),
        feature_preset="default",
        train_preset="cpu-smoke",
        enabled=True,
        source={**_FAST_COINBASE_OPTIONS, **options},
    )
