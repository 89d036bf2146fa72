"""Kraken spot candles, rebuilt from the public trade history (resumable), checked against OHLC.

Kraken quirks handled here, in one place (freqtrade keeps the same ones in its ``kraken.py``):

- ``OHLC`` serves only the 720 most recent candles whatever ``since`` says, its last row is the
  minute still in progress, and minutes without trades come back as flat rows with count 0.
  Older one-minute history exists only as trades, so a month is rebuilt from ``Trades``; the
  OHLC endpoint is used to cross-check the rebuilt minutes it still covers.
- ``Trades`` pages by a nanosecond ``last`` cursor, passed back as ``since``. Asking from one
  nanosecond before it serves the trades at the cursor time again (a page may end inside a
  burst of same-time trades), so each page's head is compared with the previous page's trades
  at that time and the repeats are dropped. ccxt appends
  ``last`` to the final raw row of each page, where it must not be mistaken for a trade id.
- Trade times are float seconds with four decimals; they are kept as integer microseconds so
  the minute of a trade is exact. Volumes are summed per minute and rounded to the pair's lot
  decimals, which is what Kraken's own OHLC reports.

Resumability: the month's download state (cursor, the trades at the cursor time, counters) and
the trades so far are checkpointed under ``staging/kraken_spot/<BASE-QUOTE>/<YYYY-MM>/`` in the
lake. A killed run re-run for the month continues from the last checkpoint; the candles are
always aggregated from the full, ordered trade set, so they are identical to an uninterrupted
run. Refreshing the current month continues from the stored cursor.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tradecore_lib.candles import candle_table, ts_millis
from tradecore_lib.lake import Lake
from tradecore_lib.markets import Market
from tradecore_lib.months import MINUTE_MS, Month, iso_utc
from tradecore_lib.progress import Progress
from tradecore_lib.sources import FetchResult, ccxt_version, source_options
from tradecore_lib.sources.ccxt_client import resolve_symbol
from tradecore_lib.sources.kraken_client import (
    KrakenClient,
    KrakenOptions,
    KrakenPermanentError,
    connect,
)

MINUTE_US = MINUTE_MS * 1000
OHLC_WINDOW = 720  # candles Kraken's OHLC endpoint serves, the one in progress included
STATE_VERSION = 1
TRADE_SCHEMA = pa.schema(
    [
        pa.field("time_us", pa.int64(), nullable=False),  # UTC microseconds
        pa.field("price", pa.float64(), nullable=False),
        pa.field("amount", pa.float64(), nullable=False),  # base currency
        pa.field("trade_id", pa.int64(), nullable=False),  # -1 where Kraken sent none
    ]
)


@dataclass(frozen=True)
class TradeColumns:
    """Trades as column arrays, in Kraken's order: ``time_us`` UTC microseconds."""

    time_us: np.ndarray
    price: np.ndarray
    amount: np.ndarray
    trade_id: np.ndarray

    def __len__(self) -> int:
        return int(self.time_us.size)

    def slice(self, start: int, stop: int | None = None) -> TradeColumns:
        return TradeColumns(*(a[start:stop] for a in self.arrays))

    @property
    def arrays(self) -> tuple[np.ndarray, ...]:
        return self.time_us, self.price, self.amount, self.trade_id

    def keys(self) -> list[tuple[int, float, float, int]]:
        """Row identities for overlap matching (few rows only: a page head or tail)."""
        return list(zip(*(a.tolist() for a in self.arrays), strict=True))

    @classmethod
    def concat(cls, parts: list[TradeColumns]) -> TradeColumns:
        if not parts:
            return cls(*(np.empty(0, dtype=f.type.to_pandas_dtype()) for f in TRADE_SCHEMA))
        return cls(*(np.concatenate(cols) for cols in zip(*(p.arrays for p in parts), strict=True)))

    def to_table(self) -> pa.Table:
        return pa.Table.from_arrays([pa.array(a) for a in self.arrays], schema=TRADE_SCHEMA)

    @classmethod
    def from_table(cls, table: pa.Table) -> TradeColumns:
        return cls(*(table.column(f.name).to_numpy() for f in TRADE_SCHEMA))


def aggregate_trades(
    time_us: np.ndarray,
    price: np.ndarray,
    amount: np.ndarray,
    *,
    start_ms: int,
    end_ms: int,
    volume_decimals: int | None = None,
) -> pa.Table:
    """One-minute OHLCV + trade count of the trades in ``[start_ms, end_ms)`` (UTC ms).

    ``time_us`` (UTC microseconds) must be sorted; ties keep their order, which decides open
    and close. Minutes without trades get no row. Vectorized: minute boundaries by binary
    search, then one ``reduceat`` pass per column. ``volume_decimals`` rounds the volume sums
    (the pair's lot decimals) so float summation noise does not survive.
    """
    # Trade index of every minute edge of the range: a binary search per minute (44,640 for a
    # month) instead of dividing every trade's time; minutes whose edges meet are empty.
    first_minute = start_ms - start_ms % MINUTE_MS
    edges = np.searchsorted(
        time_us, np.arange(first_minute, end_ms + MINUTE_MS, MINUTE_MS, dtype=np.int64) * 1000
    )
    edges[0] = np.searchsorted(time_us, start_ms * 1000)
    edges[-1] = np.searchsorted(time_us, end_ms * 1000)
    lo, hi = int(edges[0]), int(edges[-1])
    traded = np.flatnonzero(edges[1:] > edges[:-1])
    if traded.size == 0:
        return candle_table(*(np.empty(0),) * 6, np.empty(0, dtype=np.int64))
    starts = edges[traded] - lo
    ends = edges[traded + 1] - lo
    price = np.ascontiguousarray(price[lo:hi], dtype=np.float64)
    amount = np.ascontiguousarray(amount[lo:hi], dtype=np.float64)
    volume = np.add.reduceat(amount, starts)
    if volume_decimals is not None:
        volume = np.round(volume, volume_decimals)
    return candle_table(
        first_minute + traded * MINUTE_MS,
        price[starts],
        np.maximum.reduceat(price, starts),
        np.minimum.reduceat(price, starts),
        price[ends - 1],
        volume,
        ends - starts,
    )


@dataclass
class _State:
    """The checkpoint of one month's download (``state.json``)."""

    cursor_ns: int  # Kraken's ``last``: pass as ``since`` to continue
    volume_decimals: int
    chunks: list[str] = field(default_factory=list)
    trades: int = 0
    pages: int = 0
    requests: int = 0
    retries: int = 0
    complete: bool = False
    tail: list[list[Any]] = field(default_factory=list)  # trades at the cursor time
    version: int = STATE_VERSION


class _Staging:
    """The month's checkpoint folder in the lake; every object is written atomically."""

    def __init__(self, lake: Lake, market: Market, month: Month) -> None:
        self.lake = lake
        self.prefix = f"staging/kraken_spot/{market.pair_dir}/{month}/"

    @property
    def uri(self) -> str:
        return self.lake.uri(self.prefix)

    def load(self) -> _State | None:
        key = self.prefix + "state.json"
        if not self.lake.exists(key):
            return None
        raw = json.loads(self.lake.read_bytes(key))
        if raw.get("version") != STATE_VERSION:
            raise KrakenPermanentError(
                f"checkpoint {self.lake.uri(key)} has version {raw.get('version')}, expected "
                f"{STATE_VERSION}; delete {self.uri} to download the month again"
            )
        return _State(**raw)

    def save(self, state: _State, new_trades: TradeColumns | None) -> None:
        """Write the new trades as the next chunk, then the state that references it.

        A kill between the two leaves an unreferenced chunk that the resumed run overwrites.
        """
        if new_trades is not None and len(new_trades):
            name = f"trades-{len(state.chunks):05d}.parquet"
            sink = io.BytesIO()
            pq.write_table(new_trades.to_table(), sink, compression="zstd")
            self.lake.write_bytes(self.prefix + name, sink.getvalue())
            state.chunks.append(name)
        self.lake.write_bytes(self.prefix + "state.json", json.dumps(asdict(state)).encode())

    def trades(self, state: _State) -> TradeColumns:
        return TradeColumns.concat(
            [
                TradeColumns.from_table(pq.read_table(pa.BufferReader(self.lake.read_bytes(
                    self.prefix + name))))
                for name in state.chunks
            ]
        )


def _drop_repeats(page: TradeColumns, tail: list[list[Any]]) -> TradeColumns:
    """``page`` without the leading trades that repeat ``tail`` (the previous page's trades at
    the cursor time), in order. A server whose ``since`` is exclusive repeats nothing."""
    if not tail or not len(page):
        return page
    head = page.slice(0, len(tail)).keys()
    repeated = 0
    for served, known in zip(head, tail, strict=False):
        if list(served) != list(known):
            break
        repeated += 1
    return page.slice(repeated)


class KrakenSpotSource:
    """:class:`~tradecore_lib.sources.CandleSource` for ``kraken_spot`` markets."""

    def __init__(self, lake: Lake, options: KrakenOptions) -> None:
        self.lake = lake
        self.options = options

    @classmethod
    def from_market(cls, market: Market, lake: Lake) -> KrakenSpotSource:
        return cls(lake, source_options(market))

    def fetch_month(
        self, market: Market, month: Month, *, now_ms: int, log: Callable[[str], None]
    ) -> FetchResult:
        """Candles of ``month`` closed before ``now_ms`` (UTC ms), rebuilt from trades."""
        started = time.monotonic()
        what = f"{market.name} {month}"
        end_ms = min(month.end_ms, now_ms - now_ms % MINUTE_MS)  # the open minute is not done
        staging = _Staging(self.lake, market, month)
        state = staging.load()
        client: KrakenClient | None = None
        resumed = state is not None
        if state is not None and state.complete:
            log(f"{what}: complete checkpoint at {staging.uri}, no download needed")
        elif end_ms > month.start_ms:
            client = connect("kraken_spot", self.options, what=what)
            ccxt_market = resolve_symbol(client, market.symbol, what=what)
            if state is None:
                state = _State(
                    cursor_ns=(month.start_ms - self.options.boundary_overlap_s * 1000) * 10**6,
                    volume_decimals=_decimals(ccxt_market["precision"]["amount"]),
                )
            elif resumed:
                log(f"{what}: resuming from checkpoint at {staging.uri}: {state.trades} trades, "
                    f"cursor {state.cursor_ns} ns")
            self._download(client, market.symbol, month, now_ms, state, staging, log, what)

        if state is None:  # a month that has not started yet
            trades = TradeColumns.concat([])
            volume_decimals = None
        else:
            trades = staging.trades(state)
            volume_decimals = state.volume_decimals
        table = aggregate_trades(
            trades.time_us, trades.price, trades.amount,
            start_ms=month.start_ms, end_ms=max(end_ms, month.start_ms),
            volume_decimals=volume_decimals,
        )
        metadata: dict[str, Any] = {
            "source": "kraken_spot",
            "endpoint_kind": "trades rebuild",
            "api_url": client.api_url if client else "-",
            "requests": client.stats.requests if client else 0,
            "retries": client.stats.retries if client else 0,
            "requests_all_runs": state.requests if state else 0,
            "retries_all_runs": state.retries if state else 0,
            "trades_read": len(trades),
            "trade_pages": state.pages if state else 0,
            "resumed_from_checkpoint": resumed,
            "download_complete": bool(state and state.complete),
            "checkpoint": staging.uri,
            "ccxt_version": ccxt_version(),
            "fetch_seconds": 0.0,
        }
        if client is not None and now_ms - OHLC_WINDOW * MINUTE_MS < end_ms:
            metadata.update(self._crosscheck(client, market.symbol, table, end_ms, log, what))
            metadata["requests"] = client.stats.requests
            metadata["retries"] = client.stats.retries
        metadata["fetch_seconds"] = round(time.monotonic() - started, 3)
        return FetchResult(table, metadata)

    def _download(
        self,
        client: KrakenClient,
        symbol: str,
        month: Month,
        now_ms: int,
        state: _State,
        staging: _Staging,
        log: Callable[[str], None],
        what: str,
    ) -> None:
        """Page ``Trades`` from ``state.cursor_ns`` to the month's end or the present."""
        span_end = min(month.end_ms, now_ms)
        total_min = max(1, (span_end - month.start_ms) // MINUTE_MS)

        def minutes_done(cursor_ns: int) -> int:
            return int(min(max(cursor_ns // 10**6 - month.start_ms, 0) // MINUTE_MS, total_min))

        pending: list[TradeColumns] = []
        pages_pending = 0
        # Counted from the connection on, so market loading is in the totals too.
        requests_before, retries_before = 0, 0

        def checkpoint() -> None:
            nonlocal pending, pages_pending, requests_before, retries_before
            state.requests += client.stats.requests - requests_before
            state.retries += client.stats.retries - retries_before
            requests_before, retries_before = client.stats.requests, client.stats.retries
            staging.save(state, TradeColumns.concat(pending) if pending else None)
            pending, pages_pending = [], 0

        with Progress(total_min, what=f"{what} trades", unit="min", log=log) as progress:
            _advance(progress, minutes_done(state.cursor_ns))
            while True:
                # One nanosecond before the cursor, so the trades at the cursor time come again
                # whether the server's ``since`` is inclusive or exclusive: a page that ended
                # inside a burst of same-time trades then loses none of the burst's rest.
                since = state.cursor_ns - 1 if state.tail else state.cursor_ns
                page, cursor_ns = self._page(client, symbol, since, what)
                new = _drop_repeats(page, state.tail)
                if not len(new) and len(page) == self.options.trades_page_size:
                    # A whole page of one timestamp: the only way on is past it.
                    page, cursor_ns = self._page(client, symbol, state.cursor_ns, what)
                    new = _drop_repeats(page, state.tail)
                if cursor_ns < state.cursor_ns:
                    raise KrakenPermanentError(
                        f"{what}: malformed payload, Trades cursor moved back from "
                        f"{state.cursor_ns} to {cursor_ns} ns; checkpoint kept at {staging.uri}"
                    )
                if not len(new) or cursor_ns == state.cursor_ns:
                    # Caught up with the present: the month is whole once the present is past it.
                    state.complete = now_ms >= month.end_ms
                    break
                state.pages += 1
                state.trades += len(new)
                last_time = int(new.time_us[-1])
                at_last = page.time_us == last_time
                state.tail = [list(k) for k in page.slice(int(np.argmax(at_last))).keys()]
                state.cursor_ns = cursor_ns
                pending.append(new)
                pages_pending += 1
                _advance(progress, minutes_done(cursor_ns))
                if last_time >= month.end_ms * 1000:
                    state.complete = True  # a trade after the month: its last minute is closed
                    break
                if pages_pending >= self.options.checkpoint_every_pages:
                    checkpoint()
            checkpoint()
            if state.complete:
                _advance(progress, total_min)
        log(f"{what}: {state.trades} trades in {state.pages} pages, "
            f"{'month complete' if state.complete else 'up to the present'}; "
            f"checkpoint {staging.uri}")

    def _page(
        self, client: KrakenClient, symbol: str, cursor_ns: int, what: str
    ) -> tuple[TradeColumns, int]:
        """One ``Trades`` page from ``cursor_ns``, its columns and the next cursor (ns)."""
        exchange = client.exchange
        call = f"{what}: Trades since {cursor_ns}"
        # ``since``/``count`` go as raw params: ccxt's own ``since`` argument is milliseconds and
        # would also make it drop trades client-side.
        try:
            trades = client.call(
                call, exchange.fetch_trades, symbol, None, None,
                {"since": str(cursor_ns), "count": self.options.trades_page_size},
            )
        except KrakenPermanentError as exc:
            if exc.malformed:  # ccxt could not parse a row: name it from the raw payload
                raise KrakenPermanentError(
                    f"{call}: malformed payload, {_bad_raw_row(exchange.last_json_response)}; "
                    "nothing from this page was kept", malformed=True
                ) from None
            raise
        if not trades:
            return TradeColumns.concat([]), cursor_ns
        # Columns and cursor come from the payload ccxt just fetched and checked, not from its
        # parsed trades: ccxt re-sorts a page by (millisecond timestamp, id as a *string*), so
        # trade 1000 lands before 998 within a burst, which changes a minute's open/close and
        # moves the row to which it appended Kraken's ``last`` cursor.
        result = exchange.last_json_response.get("result", {})
        rows = next((v for k, v in result.items() if k != "last"), [])
        cursor = str(result.get("last", ""))
        if not cursor.isdigit():
            raise KrakenPermanentError(f"{call}: malformed payload, 'last' is {cursor[:40]!r}")
        if rows and len(rows[-1]) > 6 and str(rows[-1][-1]) == cursor:
            rows = [*rows[:-1], rows[-1][:-1]]  # ccxt appended ``last`` to this row in place
        try:
            page = _columns(rows)
        except (TypeError, ValueError, IndexError) as exc:
            raise KrakenPermanentError(f"{call}: malformed payload: {exc}",
                                       malformed=True) from None
        bad = np.flatnonzero(
            ~(np.isfinite(page.price) & (page.price > 0) & np.isfinite(page.amount)
              & (page.amount > 0))
            | np.concatenate(([False], np.diff(page.time_us) < 0))
        )
        if bad.size:
            row = int(bad[0])
            raise KrakenPermanentError(
                f"{call}: malformed payload, trade row {row} of {len(page)} is "
                f"{rows[row][:7]} (price and volume must be positive numbers, times "
                f"non-decreasing); nothing from this page was kept"
            )
        return page, int(cursor)

    def _crosscheck(
        self,
        client: KrakenClient,
        symbol: str,
        table: pa.Table,
        end_ms: int,
        log: Callable[[str], None],
        what: str,
    ) -> dict[str, Any]:
        """Compare the rebuilt minutes with Kraken's OHLC for the minutes both have.

        Kraken's last row is the minute in progress and its zero-count rows are fills, not
        trades; both are dropped before comparing.
        """
        rows = client.call(f"{what}: OHLC", client.exchange.fetch_ohlcv, symbol, "1m")
        ohlc = np.array(rows[:-1], dtype=np.float64).reshape(-1, 6)
        ohlc = ohlc[(ohlc[:, 5] > 0) & (ohlc[:, 0] < end_ms)]
        if not ohlc.size:
            return {"ohlc_crosscheck_minutes": 0, "ohlc_crosscheck_mismatches": 0}
        first = int(ohlc[0, 0])
        ts = ts_millis(table)
        keep = ts >= first
        mine = np.column_stack(
            [ts[keep]] + [table.column(c).to_numpy()[keep] for c in
                          ("open", "high", "low", "close", "volume")]
        ).astype(np.float64)
        common, in_mine, in_ohlc = np.intersect1d(mine[:, 0], ohlc[:, 0], return_indices=True)
        differing = ~np.isclose(mine[in_mine, 1:], ohlc[in_ohlc, 1:], rtol=1e-9, atol=0.0)
        # A minute only one side has is a mismatch too (a lost or an invented minute).
        mismatches = int(differing.any(axis=1).sum()) + len(mine) + len(ohlc) - 2 * len(common)
        if mismatches:
            log(f"WARNING {what}: {mismatches} of {len(ohlc)} minutes rebuilt from trades differ "
                f"from Kraken's OHLC since {iso_utc(first)}")
        return {"ohlc_crosscheck_minutes": len(ohlc), "ohlc_crosscheck_mismatches": mismatches}


def _advance(progress: Progress, done: int) -> None:
    """Move ``progress`` up to ``done`` units; a page inside one minute reports nothing."""
    if done > progress.done:
        progress.update(done - progress.done)


def _columns(rows: list[list[Any]]) -> TradeColumns:
    """Column arrays of a raw ``Trades`` page, in Kraken's order.

    Rows are ``[price, volume, time, side, type, misc(, trade_id)]``; times are the raw float
    seconds (ccxt rounds them to milliseconds); rows without a trade id get -1.
    """
    return TradeColumns(
        time_us=np.rint(np.array([r[2] for r in rows], dtype=np.float64) * 1e6).astype(np.int64),
        price=np.array([r[0] for r in rows], dtype=np.float64),
        amount=np.array([r[1] for r in rows], dtype=np.float64),
        trade_id=np.array([int(r[6]) if len(r) > 6 else -1 for r in rows], dtype=np.int64),
    )


def _bad_raw_row(response: Any) -> str:
    """Describe the first raw ``Trades`` row whose price, volume or time is not a number."""
    result = response.get("result", {}) if isinstance(response, dict) else {}
    rows = next((v for k, v in result.items() if k != "last"), []) if result else []
    for i, row in enumerate(rows):
        try:
            [float(row[0]), float(row[1]), float(row[2])]
        except (TypeError, ValueError, IndexError):
            return f"trade row {i} of {len(rows)} is {row}"
    return "the response could not be parsed"


def _decimals(precision: float | None) -> int:
    """Decimal places of a ccxt tick-size precision (``1e-08`` -> 8); Kraken lots have 8."""
    return 8 if not precision else max(0, round(-math.log10(precision)))
