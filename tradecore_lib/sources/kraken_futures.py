"""Kraken Futures candles from the charts API (``krakenfutures.fetch_ohlcv``), paged across a month.

Kraken Futures quirks handled here: the charts endpoint takes ``from``/``to`` in seconds and
serves at most 2000 candles per request; it fills minutes without trades with flat
zero-volume candles, which are dropped (a minute without trades is a missing row, as for spot);
and it gives no trade count, so ``trades`` is null.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from tradecore_lib.candles import candle_table
from tradecore_lib.markets import Market
from tradecore_lib.months import MINUTE_MS, Month
from tradecore_lib.progress import Progress
from tradecore_lib.sources import FetchResult, ccxt_version, source_options
from tradecore_lib.sources.ccxt_client import ohlcv_array, resolve_symbol
from tradecore_lib.sources.kraken_client import (
    KrakenOptions,
    KrakenPermanentError,
    connect,
)

WINDOW_CANDLES = 2000  # the charts endpoint's cap per request


class KrakenFuturesSource:
    """:class:`~tradecore_lib.sources.CandleSource` for ``kraken_futures`` markets."""

    def __init__(self, options: KrakenOptions) -> None:
        self.options = options

    @classmethod
    def from_market(cls, market: Market) -> KrakenFuturesSource:
        return cls(source_options(market))

    def fetch_month(
        self, market: Market, month: Month, *, now_ms: int, log: Callable[[str], None]
    ) -> FetchResult:
        """Trade-price candles of ``month`` closed before ``now_ms`` (UTC ms)."""
        started = time.monotonic()
        what = f"{market.name} {month}"
        end_ms = min(month.end_ms, now_ms - now_ms % MINUTE_MS)
        client = connect("kraken_futures", self.options, what=what)
        resolve_symbol(client, market.symbol, what=what)
        pages: list[np.ndarray] = []
        cursor = month.start_ms
        total = max(1, (end_ms - month.start_ms) // MINUTE_MS)
        with Progress(total, what=f"{what} charts", unit="min", log=log) as progress:
            while cursor < end_ms:
                rows = client.call(
                    f"{what}: charts from {cursor // 1000} s",
                    client.exchange.fetch_ohlcv, market.symbol, "1m", cursor, WINDOW_CANDLES,
                    {"price": "trade"},
                )
                candles = ohlcv_array(rows, f"{what}: charts from {cursor // 1000} s",
                                      KrakenPermanentError)
                candles = candles[(candles[:, 0] >= cursor) & (candles[:, 0] < end_ms)]
                # Continue after the last candle served; a window with none is skipped whole.
                # Either way the cursor moves, and a server capping below 2000 loses nothing.
                advance = (int(candles[-1, 0]) + MINUTE_MS if len(candles)
                           else cursor + WINDOW_CANDLES * MINUTE_MS)
                pages.append(candles)
                progress.update((min(advance, end_ms) - cursor) // MINUTE_MS)
                cursor = advance
        table_rows = np.concatenate(pages) if pages else np.empty((0, 6))
        table_rows = table_rows[table_rows[:, 5] > 0]  # flat zero-volume fills are not trades
        table = candle_table(
            table_rows[:, 0].astype(np.int64), *(table_rows[:, i] for i in range(1, 6)), None
        )
        metadata: dict[str, Any] = {
            "source": "kraken_futures",
            "endpoint_kind": "futures charts",
            "api_url": client.api_url,
            "requests": client.stats.requests,
            "retries": client.stats.retries,
            "trades_read": 0,  # the charts API serves candles, not trades
            "candles_read": int(sum(len(p) for p in pages)),
            "ccxt_version": ccxt_version(),
            "fetch_seconds": round(time.monotonic() - started, 3),
        }
        return FetchResult(table, metadata)

