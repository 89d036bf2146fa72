"""Candle sources behind one interface: synthetic, Kraken spot/futures and archives, Coinbase.

A source turns (market, month) into a candle table in the fixed schema plus provenance
metadata. It never writes the partition itself: the caller validates and publishes it, so a
bad source table never half-writes the lake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, Protocol

import pyarrow as pa

from tradecore_lib.config import ConfigModel, did_you_mean
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.lake import Lake
from tradecore_lib.markets import Market
from tradecore_lib.months import Month
from tradecore_lib.sources.coinbase_options import CoinbaseOptions
from tradecore_lib.sources.kraken_options import KrakenOptions
from tradecore_lib.sources.synthetic_generator import SyntheticOptions

# venue -> the model of its ``source:`` options in configs/markets.yaml. A market's options are
# validated by this model when markets.yaml loads, so a typo fails the code location load.
SOURCE_OPTIONS: dict[str, type[ConfigModel]] = {
    "synthetic": SyntheticOptions,
    "kraken_spot": KrakenOptions,
    "kraken_futures": KrakenOptions,
    "coinbase_spot": CoinbaseOptions,
}
VENUES = tuple(SOURCE_OPTIONS)
# Spot venues: shorts borrow (a borrow rate), nothing pays funding.
SPOT_VENUES = frozenset({"kraken_spot", "coinbase_spot"})


@dataclass
class FetchResult:
    """Candles of one month and how they were obtained (for partition metadata)."""

    table: pa.Table
    metadata: dict[str, Any] = field(default_factory=dict)


class CandleSource(Protocol):
    """Produces the candles of one market-month."""

    def fetch_month(
        self, market: Market, month: Month, *, now_ms: int, log: Callable[[str], None]
    ) -> FetchResult:
        """Candles of ``month`` closed before ``now_ms`` (UTC ms), in the candle schema."""
        ...


def ccxt_version() -> str:
    """The installed ccxt version, for partition metadata (without importing ccxt)."""
    return version("ccxt")


def source_options_model(venue: str) -> type[ConfigModel]:
    """The options model of ``venue``'s ``source:`` mapping.

    Raises:
        ValueError: an unknown venue (with the valid ones and a did-you-mean).
    """
    if venue not in SOURCE_OPTIONS:
        raise ValueError(f"unknown venue {venue!r}{did_you_mean(venue, VENUES)}; valid venues: "
                         f"{', '.join(VENUES)}")
    return SOURCE_OPTIONS[venue]


def parse_source_options(venue: str, raw: Mapping[str, Any]) -> ConfigModel:
    """``raw`` (a market's ``source:`` mapping) validated by ``venue``'s options model.

    Raises:
        pydantic.ValidationError: the model's field errors (unknown keys, types, bounds);
            inside a :class:`~tradecore_lib.markets.Market` they read ``source.<key>``.
    """
    return source_options_model(venue).model_validate(dict(raw))


def source_options(market: Market) -> ConfigModel:
    """The typed ``source:`` options of ``market`` (validated when markets.yaml loaded)."""
    return parse_source_options(market.venue, market.source)


class SourceUnavailableError(TradeCoreError, RuntimeError):
    """The market's venue has no source implementation (yet) or is not configured."""


def source_for(market: Market, *, lake: Lake, archive_file: str | None = None) -> CandleSource:
    """The source implementing ``market.venue``.

    Args:
        market: the market to fetch.
        lake: the lake, whose staging area sources may use for resumable checkpoints.
        archive_file: when set, the candles come from this Kraken OHLCVT archive (ZIP or CSV)
            instead of the venue's API.
    """
    # Imports are local so a venue's dependencies load only when that venue is used.
    if archive_file is not None:
        from tradecore_lib.sources.kraken_archive import KrakenArchiveSource

        return KrakenArchiveSource(archive_file)
    if market.venue == "synthetic":
        from tradecore_lib.sources.synthetic import SyntheticSource

        return SyntheticSource.from_market(market)
    if market.venue == "kraken_spot":
        from tradecore_lib.sources.kraken_spot import KrakenSpotSource

        return KrakenSpotSource.from_market(market, lake)
    if market.venue == "kraken_futures":
        from tradecore_lib.sources.kraken_futures import KrakenFuturesSource

        return KrakenFuturesSource.from_market(market)
    if market.venue == "coinbase_spot":
        from tradecore_lib.sources.coinbase import CoinbaseSpotSource

        return CoinbaseSpotSource.from_market(market, lake)
    raise SourceUnavailableError(
        f"market {market.name}: venue {market.venue!r} has no candle source in this version"
    )
