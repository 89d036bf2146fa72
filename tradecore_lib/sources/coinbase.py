"""Coinbase spot candles through ccxt's ``coinbase`` (Advanced Trade API, public market data).

Coinbase quirks handled here, in one place:

- The public candles endpoint (``/api/v3/brokerage/market/products/<ID>/candles``) takes
  ``start``/``end`` in Unix seconds and a ``granularity`` (``ONE_MINUTE``), answers **newest
  first**, leaves minutes without trades out, and refuses a request spanning more than 350
  candles (HTTP 400 ``INVALID_ARGUMENT``). ccxt's ``fetch_ohlcv`` asks for ``limit`` minutes
  from ``since`` (``end = start + limit`` minutes, so an end-inclusive answer holds one candle
  more), sorts ascending and keeps at most 300. A month is therefore read in fixed windows of
  ``candles_per_request`` (<= 300) minutes, and each window keeps only its own minutes: the
  extra end candle is the next window's first, never lost or doubled, whichever way the
  server treats ``end``.
- The Advanced Trade API writes errors gRPC-gateway style, ``{"error": "INTERNAL", ...}``,
  which ccxt raises as a plain ``ExchangeError`` before looking at the HTTP status; the codes
  that mean "try again later" are listed in :data:`_TRANSIENT_CODES`. Its gateway answers a
  rate limit with an HTML page (HTTP 429), which ccxt maps to ``RateLimitExceeded`` itself.
- No trade count is served, so ``trades`` is null; no key is needed for public data.

Resumability: after every ``checkpoint_every_pages`` windows, the candles so far and the
cursor are written under ``staging/coinbase_spot/<BASE-QUOTE>/<YYYY-MM>/`` in the lake (the
candles first, then the state that points past them). A killed run re-run for the month
continues from the cursor, one window back (candles written past the cursor just before a
kill are dropped, not doubled); a refresh of the current month likewise, so the minutes that
had only just closed when the previous run read them (Coinbase serves a minute's candle a
little after it closes) are read again, final this time. A finished month's complete
checkpoint serves a re-materialization without a request.
"""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import ccxt
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tradecore_lib.candles import candle_table, ts_millis
from tradecore_lib.lake import Lake
from tradecore_lib.markets import Market
from tradecore_lib.months import MINUTE_MS, Month
from tradecore_lib.progress import Progress
from tradecore_lib.sources import FetchResult, ccxt_version, source_options
from tradecore_lib.sources.ccxt_client import (
    CcxtClient,
    VenueError,
    VenuePermanentError,
    VenueUnavailableError,
    base_url,
    build_exchange,
    ohlcv_array,
    resolve_symbol,
)
from tradecore_lib.sources.coinbase_options import CoinbaseOptions

URL_VAR = "TRADECORE_COINBASE_URL"
DEFAULT_URL = "https://api.coinbase.com"
STATE_VERSION = 1
# gRPC status codes of Advanced Trade error bodies that waiting can cure, and the v2 API's
# lower-case ones ccxt maps to a plain ExchangeError.
_TRANSIENT_CODES = ("INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED",
                    "RATE_LIMIT_EXCEEDED", "internal_server_error")
_ERROR_CODE = re.compile(r'"(?:error|id)"\s*:\s*"([A-Za-z_]+)"')


class CoinbaseError(VenueError):
    """A Coinbase call failed; the message names market, month and what to do."""


class CoinbasePermanentError(CoinbaseError, VenuePermanentError):
    """Retrying cannot help: unknown product, malformed payload, wrong URL."""


class CoinbaseUnavailableError(CoinbaseError, VenueUnavailableError):
    """Transient failures outlasted the retry budget; a re-run resumes from the checkpoint."""


class CoinbaseClient(CcxtClient):
    """A :class:`~.ccxt_client.CcxtClient` raising Coinbase's errors, retrying its codes."""

    venue: ClassVar[str] = "Coinbase"
    permanent_error: ClassVar[type[VenuePermanentError]] = CoinbasePermanentError
    unavailable_error: ClassVar[type[VenueUnavailableError]] = CoinbaseUnavailableError

    def venue_transient(self, message: str) -> bool:
        return any(code in _TRANSIENT_CODES for code in _ERROR_CODE.findall(message))


def connect(options: CoinbaseOptions, *, what: str) -> CoinbaseClient:
    """A :class:`CoinbaseClient` on ``TRADECORE_COINBASE_URL`` (or Coinbase's own host), with
    its markets loaded (the v2 currency listings and the v3 public products)."""
    root = base_url(URL_VAR, DEFAULT_URL)
    exchange = build_exchange(ccxt.coinbase, {"rest": root}, options)
    client = CoinbaseClient(exchange, root, options, stats=exchange.stats)
    client.call(f"{what}: load markets", exchange.load_markets)
    return client


@dataclass
class _State:
    """The checkpoint of one month's download (``state.json``)."""

    cursor_ms: int  # the next window starts here; every candle before it is in candles.parquet
    pages: int = 0
    requests: int = 0
    retries: int = 0
    complete: bool = False
    version: int = STATE_VERSION


class _Staging:
    """The month's checkpoint folder in the lake; every object is written atomically."""

    def __init__(self, lake: Lake, market: Market, month: Month) -> None:
        self.lake = lake
        self.prefix = f"staging/coinbase_spot/{market.pair_dir}/{month}/"

    @property
    def uri(self) -> str:
        return self.lake.uri(self.prefix)

    def load(self) -> tuple[_State, np.ndarray] | None:
        """The state and the candles before its cursor (rows ``[ts, o, h, l, c, v]``)."""
        key = self.prefix + "state.json"
        if not self.lake.exists(key):
            return None
        raw = json.loads(self.lake.read_bytes(key))
        if raw.get("version") != STATE_VERSION:
            raise CoinbasePermanentError(
                f"checkpoint {self.lake.uri(key)} has version {raw.get('version')}, expected "
                f"{STATE_VERSION}; delete {self.uri} to download the month again")
        state = _State(**raw)  # written after the candles it points past: they exist
        table = pq.read_table(pa.BufferReader(
            self.lake.read_bytes(self.prefix + "candles.parquet")))
        rows = np.column_stack([ts_millis(table).astype(np.float64)] + [
            table.column(name).to_numpy() for name in ("open", "high", "low", "close", "volume")])
        return state, rows[rows[:, 0] < state.cursor_ms]

    def save(self, state: _State, rows: np.ndarray) -> None:
        """The candles first, then the state pointing past them: a kill between the two
        leaves candles past the old cursor, which :meth:`load` drops."""
        sink = io.BytesIO()
        pq.write_table(_table(rows), sink, compression="zstd")
        self.lake.write_bytes(self.prefix + "candles.parquet", sink.getvalue())
        self.lake.write_bytes(self.prefix + "state.json", json.dumps(asdict(state)).encode())


def _table(rows: np.ndarray) -> pa.Table:
    return candle_table(rows[:, 0].astype(np.int64), *(rows[:, i] for i in range(1, 6)), None)


class CoinbaseSpotSource:
    """:class:`~tradecore_lib.sources.CandleSource` for ``coinbase_spot`` markets."""

    def __init__(self, lake: Lake, options: CoinbaseOptions) -> None:
        self.lake = lake
        self.options = options

    @classmethod
    def from_market(cls, market: Market, lake: Lake) -> CoinbaseSpotSource:
        return cls(lake, source_options(market))

    def fetch_month(
        self, market: Market, month: Month, *, now_ms: int, log: Callable[[str], None]
    ) -> FetchResult:
        """Candles of ``month`` closed before ``now_ms`` (UTC ms)."""
        started = time.monotonic()
        what = f"{market.name} {month}"
        end_ms = min(month.end_ms, now_ms - now_ms % MINUTE_MS)  # the open minute is not done
        staging = _Staging(self.lake, market, month)
        loaded = staging.load()
        resumed = loaded is not None
        state, rows = loaded or (_State(cursor_ms=month.start_ms), np.empty((0, 6)))
        if not state.complete:
            # The last window before the cursor is read again: a minute that had only just
            # closed when the previous run read it (its candle partial, or not served yet)
            # is replaced by Coinbase's final one. One request more per refresh.
            state.cursor_ms = max(month.start_ms,
                                  state.cursor_ms - self.options.candles_per_request * MINUTE_MS)
            rows = rows[rows[:, 0] < state.cursor_ms]
        client: CoinbaseClient | None = None
        if state.complete:
            log(f"{what}: complete checkpoint at {staging.uri}, no download needed")
        elif state.cursor_ms < end_ms:
            if resumed:
                log(f"{what}: resuming from checkpoint at {staging.uri}: {len(rows)} candles, "
                    f"cursor {state.cursor_ms} ms")
            client = connect(self.options, what=what)
            resolve_symbol(client, market.symbol, what=what)
            rows = self._download(client, market.symbol, month, end_ms, state, rows, staging,
                                  log, what)
        metadata: dict[str, Any] = {
            "source": "coinbase_spot",
            "endpoint_kind": "advanced trade public candles",
            "api_url": client.api_url if client else "-",
            "requests": client.stats.requests if client else 0,
            "retries": client.stats.retries if client else 0,
            "requests_all_runs": state.requests,
            "retries_all_runs": state.retries,
            "trades_read": 0,  # the candles endpoint serves candles, not trades
            "candles_read": len(rows),
            "candle_pages": state.pages,
            "resumed_from_checkpoint": resumed,
            "download_complete": state.complete,
            "checkpoint": staging.uri,
            "ccxt_version": ccxt_version(),
            "fetch_seconds": round(time.monotonic() - started, 3),
        }
        return FetchResult(_table(rows), metadata)

    def _download(
        self, client: CoinbaseClient, symbol: str, month: Month, end_ms: int, state: _State,
        rows: np.ndarray, staging: _Staging, log: Callable[[str], None], what: str,
    ) -> np.ndarray:
        """Windows from the cursor to ``end_ms``, checkpointed; returns every candle so far."""
        window = self.options.candles_per_request
        parts = [rows]
        requests_before, retries_before = client.stats.requests, client.stats.retries
        total = max(1, (end_ms - month.start_ms) // MINUTE_MS)
        with Progress(total, what=f"{what} candles", unit="min", log=log) as progress:
            progress.update((state.cursor_ms - month.start_ms) // MINUTE_MS)
            while state.cursor_ms < end_ms:
                stop = min(state.cursor_ms + window * MINUTE_MS, end_ms)
                call = f"{what}: candles from {state.cursor_ms // 1000} s"
                served = client.call(call, client.exchange.fetch_ohlcv, symbol, "1m",
                                     state.cursor_ms, window)
                candles = ohlcv_array(served, call, CoinbasePermanentError)
                parts.append(candles[(candles[:, 0] >= state.cursor_ms)
                                     & (candles[:, 0] < stop)])
                progress.update((stop - state.cursor_ms) // MINUTE_MS)
                state.cursor_ms = stop
                state.pages += 1
                state.complete = stop >= month.end_ms
                if state.complete or stop >= end_ms or state.pages % (
                        self.options.checkpoint_every_pages) == 0:
                    state.requests += client.stats.requests - requests_before
                    state.retries += client.stats.retries - retries_before
                    requests_before, retries_before = client.stats.requests, client.stats.retries
                    parts = [np.concatenate(parts)]
                    staging.save(state, parts[0])
        return parts[0]
