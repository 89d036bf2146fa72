"""A loopback Kraken (spot + Futures) speaking the public REST wire formats ccxt reads.

Serves, from one deterministic trade history generated from a seed:

- spot ``/0/public/Assets``, ``/0/public/AssetPairs`` (what ``ccxt.kraken.load_markets`` reads),
  ``/0/public/Trades`` (``since`` in seconds or nanoseconds, ``count`` <= 1000, the ``last``
  nanosecond cursor, 7-field rows with the trade id) and ``/0/public/OHLC`` (only the 720 most
  recent candles whatever ``since`` says, zero-trade minutes filled with the previous close and
  count 0, the last row the uncommitted minute in progress), all behind ``{"error": [...],
  "result": ...}`` envelopes with HTTP 200, as Kraken does;
- futures ``/derivatives/api/v3/instruments`` and ``/api/charts/v1/trade/<symbol>/1m`` with
  ``from``/``to`` in seconds, at most 2000 candles and ``more_candles``;
- futures ``/derivatives/api/v4/historicalfundingrates?symbol=PF_XBTUSD``: the contract's whole
  funding history up to ``now`` in one response, ascending, ``{"result": "success",
  "serverTime", "rates": [{"timestamp": ISO-8601, "fundingRate", "relativeFundingRate"}]}``
  (an unknown symbol gets Kraken's HTTP 400 ``BAD_REQUEST`` body).

Faults are switched on per request path: :meth:`FakeKraken.inject` queues one fault for each
of the next matching requests; :attr:`FakeKraken.fault_cycle` injects a fault every
``fault_every``-th request. The OHLC candles are computed here with plain Python loops, an
implementation independent of the one under test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tests.fakes.loopback import FakeHandler, FaultSwitches

MINUTE_S = 60
SPOT_PAIR_ID = "XXBTZUSD"
FUTURES_SYMBOL = "PF_XBTUSD"
OHLC_LIMIT = 720
CHARTS_LIMIT = 2000
FAULTS = (
    "rate_limit",  # HTTP 200 with Kraken's EAPI:Rate limit exceeded body
    "unavailable",  # HTTP 200 with EService:Unavailable
    "busy",  # HTTP 200 with EService:Busy
    "http_429",
    "http_502",
    "http_520",
    "drop",  # the connection is closed without a response
    "truncate",  # headers promise more body than is sent, then the connection closes
)


@dataclass(frozen=True)
class Trades:
    """The fake's trade history; times in units of 100 microseconds (Kraken's 4 decimals)."""

    time_e4: np.ndarray  # int64, seconds * 10_000
    price_e1: np.ndarray  # int64, price in tenths of a USD (pair_decimals = 1)
    volume_e8: np.ndarray  # int64, volume in 1e-8 BTC (lot_decimals = 8)
    side: np.ndarray  # bool, True = buy
    trade_id: np.ndarray  # int64, 1-based

    @property
    def time_ns(self) -> np.ndarray:
        return self.time_e4 * 100_000

    def row(self, i: int, with_id: bool) -> list[Any]:
        price, volume = int(self.price_e1[i]), int(self.volume_e8[i])
        row: list[Any] = [
            f"{price // 10}.{price % 10}",
            f"{volume // 100_000_000}.{volume % 100_000_000:08d}",
            int(self.time_e4[i]) / 10_000,
            "b" if self.side[i] else "s",
            "l" if i % 3 else "m",
            "",
        ]
        if with_id:
            row.append(int(self.trade_id[i]))
        return row


def generate_trades(
    seed: int,
    start_ms: int,
    end_ms: int,
    *,
    mean_gap_s: float = 300.0,
    gaps_ms: tuple[tuple[int, int], ...] = (),
) -> Trades:
    """Trades in ``[start_ms, end_ms)`` minus the ``gaps_ms`` windows.

    About a quarter of the trades share the timestamp of the one before (one order filling
    several resting orders), so a page boundary often falls inside a burst.
    """
    rng = np.random.default_rng(seed)
    span_e4 = (end_ms - start_ms) * 10
    n = int(span_e4 / (mean_gap_s * 10_000) * 1.3) + 10
    steps = rng.exponential(mean_gap_s * 10_000, n).astype(np.int64) + 1
    steps[rng.random(n) < 0.25] = 0
    time_e4 = start_ms * 10 + np.cumsum(steps)
    keep = time_e4 < end_ms * 10
    for gap_start, gap_end in gaps_ms:
        keep &= (time_e4 < gap_start * 10) | (time_e4 >= gap_end * 10)
    time_e4 = time_e4[keep]
    count = time_e4.size
    price_e1 = 420_000 + np.cumsum(rng.integers(-40, 41, count))
    volume_e8 = rng.integers(1, 300_000_000, count)
    return Trades(
        time_e4=time_e4,
        price_e1=price_e1.astype(np.int64),
        volume_e8=volume_e8.astype(np.int64),
        side=rng.random(count) < 0.5,
        trade_id=np.arange(1, count + 1, dtype=np.int64),
    )


@dataclass(frozen=True)
class Funding:
    """The fake contract's funding history: one period per ``period_ms``.

    ``relative`` is Kraken's ``relativeFundingRate`` (fraction of notional per period),
    ``absolute`` its ``fundingRate`` (USD per contract: the relative rate times a price).
    """

    ts_ms: np.ndarray  # int64, period times (epoch ms)
    relative: np.ndarray  # float64
    absolute: np.ndarray  # float64


def generate_funding(seed: int, start_ms: int, end_ms: int, *, period_ms: int = 3_600_000,
                     mean: float = 1e-5, scale: float = 2e-5) -> Funding:
    """Periods at every multiple of ``period_ms`` in ``[start_ms, end_ms)``, with seeded rates
    of both signs (rounded to 1e-12, as Kraken prints them)."""
    first = -(-start_ms // period_ms) * period_ms
    ts_ms = np.arange(first, end_ms, period_ms, dtype=np.int64)
    rng = np.random.default_rng(seed)
    relative = np.round(rng.normal(mean, scale, ts_ms.size), 12)
    return Funding(ts_ms, relative, np.round(relative * 42_000.0, 9))


def python_candles(trades: Trades, first_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """1-minute candles of the trades in ``[first_ms, end_ms)``, zero-trade minutes absent.

    A plain loop over trades (the fake's own arithmetic), with prices in tenths and volumes in
    1e-8 units so no float rounding is involved.
    """
    candles: dict[int, dict[str, Any]] = {}
    for i in range(trades.time_e4.size):
        ts_ms = int(trades.time_e4[i]) // 10
        if not first_ms <= ts_ms < end_ms:
            continue
        minute = ts_ms - ts_ms % 60_000
        price, volume = int(trades.price_e1[i]), int(trades.volume_e8[i])
        c = candles.get(minute)
        if c is None:
            candles[minute] = {"ts": minute, "o": price, "h": price, "l": price, "c": price,
                               "v": volume, "n": 1, "pv": price * volume}
        else:
            c["h"], c["l"], c["c"] = max(c["h"], price), min(c["l"], price), price
            c["v"] += volume
            c["n"] += 1
            c["pv"] += price * volume
    return [candles[k] for k in sorted(candles)]


class FakeKraken(FaultSwitches):
    """The fake venue: trade history, a clock, fault switches, request counters.

    Attributes:
        now_ms: the venue's present (UTC ms); nothing after it is served, and the OHLC window
            ends at the minute containing it.
        with_trade_ids: serve the 7th trade field (Kraken's trade id) as Kraken does since
            2023; off, rows have 6 fields as before.
        inclusive_since: Trades returns trades at ``time >= since`` (so the trade the cursor
            points at comes again); off, ``time > since``.
        malformed_trade: index of a trade served with a non-numeric price, or None.
        fault_cycle / fault_every / fault_paths: every ``fault_every``-th request to a path
            starting with one of ``fault_paths`` gets the next fault of ``fault_cycle``.
        funding: the perpetual's funding history (:func:`generate_funding`); periods after
            ``now_ms`` are not served.
    """

    def __init__(self, spot: Trades, futures: Trades, *, now_ms: int,
                 funding: Funding | None = None) -> None:
        self.fault_paths: tuple[str, ...] = ("/0/public/Trades", "/api/charts/")
        super().__init__(FAULTS, lambda path: path.startswith(self.fault_paths))
        self.spot = spot
        self.futures = futures
        self.now_ms = now_ms
        # by default hourly funding over the span of the futures trades
        self.funding = funding or generate_funding(
            0, int(futures.time_e4[0]) // 10, int(futures.time_e4[-1]) // 10 + 1)
        self.with_trade_ids = True
        self.inclusive_since = True
        self.malformed_trade: int | None = None
        self._futures_candles = {c["ts"]: c for c in python_candles(futures, 0, 2**62)}
        self._futures_minutes = np.array(sorted(self._futures_candles), dtype=np.int64)

    # ----------------------------------------------------------------- spot endpoints
    def assets(self, _: dict[str, str]) -> dict[str, Any]:
        return {"error": [], "result": {
            "XXBT": {"aclass": "currency", "altname": "XBT", "decimals": 10,
                     "display_decimals": 5, "collateral_value": 1.0, "status": "enabled"},
            "ZUSD": {"aclass": "currency", "altname": "USD", "decimals": 4,
                     "display_decimals": 2, "collateral_value": 1.0, "status": "enabled"},
            "XETH": {"aclass": "currency", "altname": "ETH", "decimals": 10,
                     "display_decimals": 5, "collateral_value": 1.0, "status": "enabled"},
        }}

    def asset_pairs(self, _: dict[str, str]) -> dict[str, Any]:
        def pair(altname: str, wsname: str, base: str, quote: str, decimals: int) -> dict:
            return {
                "altname": altname, "wsname": wsname, "aclass_base": "currency", "base": base,
                "aclass_quote": "currency", "quote": quote, "lot": "unit",
                "cost_decimals": 5, "pair_decimals": decimals, "lot_decimals": 8,
                "lot_multiplier": 1, "leverage_buy": [2, 3], "leverage_sell": [2, 3],
                "fees": [[0, 0.4], [10000, 0.35]], "fees_maker": [[0, 0.25], [10000, 0.2]],
                "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
                "ordermin": "0.00005", "costmin": "0.5", "tick_size": "0.1",
                "status": "online",
            }

        return {"error": [], "result": {
            SPOT_PAIR_ID: pair("XBTUSD", "XBT/USD", "XXBT", "ZUSD", 1),
            "XETHZUSD": pair("ETHUSD", "ETH/USD", "XETH", "ZUSD", 2),
        }}

    def _check_pair(self, query: dict[str, str]) -> dict[str, Any] | None:
        if query.get("pair") not in (SPOT_PAIR_ID, "XBTUSD"):
            return {"error": ["EQuery:Unknown asset pair"]}
        return None

    def trades(self, query: dict[str, str]) -> dict[str, Any]:
        if (error := self._check_pair(query)) is not None:
            return error
        count = min(int(query.get("count", 1000)), 1000)
        since = int(query.get("since", 0))
        # Kraken takes ``since`` in seconds or nanoseconds; anything this small is seconds.
        since_ns = since * 1_000_000_000 if since < 10**12 else since
        times = self.spot.time_ns
        start = int(np.searchsorted(times, since_ns, "left" if self.inclusive_since else "right"))
        stop = min(start + count, int(np.searchsorted(times, self.now_ms * 1_000_000, "left")))
        rows = [self.spot.row(i, self.with_trade_ids) for i in range(start, stop)]
        if self.malformed_trade is not None and start <= self.malformed_trade < stop:
            rows[self.malformed_trade - start][0] = "12x45.6"
        last = str(int(times[stop - 1])) if stop > start else str(since_ns)
        return {"error": [], "result": {SPOT_PAIR_ID: rows, "last": last}}

    def ohlc_window(self) -> list[list[Any]]:
        """Kraken's 720 most recent 1m candles up to ``now``, the last one uncommitted."""
        current = self.now_ms - self.now_ms % 60_000
        first = current - (OHLC_LIMIT - 1) * 60_000
        by_minute = {c["ts"]: c for c in python_candles(self.spot, first, self.now_ms)}
        # The candle before the window gives the fill price of leading empty minutes.
        before = python_candles(self.spot, first - 86_400_000, first)
        close = before[-1]["c"] if before else None
        rows = []
        for ts in range(first, current + 60_000, 60_000):
            c = by_minute.get(ts)
            if c is not None:
                close = c["c"]
                vwap = c["pv"] / c["v"] / 10
                rows.append([ts // 1000, _p(c["o"]), _p(c["h"]), _p(c["l"]), _p(c["c"]),
                             f"{vwap:.1f}", _v(c["v"]), c["n"]])
            elif close is not None:
                rows.append([ts // 1000, *[_p(close)] * 5, _v(0), 0])
        return rows

    def ohlc(self, query: dict[str, str]) -> dict[str, Any]:
        if (error := self._check_pair(query)) is not None:
            return error
        rows = self.ohlc_window()
        since = int(query.get("since", 0))
        rows = [r for r in rows if r[0] > since]
        last = rows[-2][0] if len(rows) > 1 else since
        return {"error": [], "result": {SPOT_PAIR_ID: rows, "last": last}}

    # ----------------------------------------------------------------- futures endpoints
    def instruments(self, _: dict[str, str]) -> dict[str, Any]:
        return {"result": "success", "serverTime": "2024-01-01T00:00:00.000Z", "instruments": [
            {"symbol": FUTURES_SYMBOL, "type": "flexible_futures", "underlying": "rr_xbtusd",
             "tickSize": 0.5, "contractSize": 1, "tradeable": True, "impactMidSize": 1,
             "maxPositionSize": 1000000, "openingDate": "2022-01-01T00:00:00.000Z",
             "marginLevels": [{"numNonContractUnits": 0, "initialMargin": 0.02,
                               "maintenanceMargin": 0.01}],
             "fundingRateCoefficient": 8, "maxRelativeFundingRate": 0.001,
             "isin": "GB00J62YGL67", "contractValueTradePrecision": 4,
             "postOnly": False, "feeScheduleUid": "eef90775", "retailMarginLevels": [],
             "category": "Layer 1", "tags": []},
            {"symbol": "in_xbtusd", "type": "spot index", "tradeable": False},
        ]}

    def charts(self, symbol: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if symbol != FUTURES_SYMBOL:
            return 400, {"result": "error", "error": "contractNotFound"}
        start_s, end_s = int(query["from"]), int(query["to"])
        now_s = self.now_ms // 1000
        candles = []
        for ts_s in range(start_s - start_s % 60 + (60 if start_s % 60 else 0), end_s + 1, 60):
            if ts_s > now_s or len(candles) == CHARTS_LIMIT:
                break
            c = self._futures_candles.get(ts_s * 1000)
            # Kraken Futures charts fill zero-trade minutes with a flat zero-volume candle at
            # the previous close.
            if c is None:
                before = int(np.searchsorted(self._futures_minutes, ts_s * 1000)) - 1
                if before >= 0:
                    fill = _p(self._futures_candles[int(self._futures_minutes[before])]["c"])
                    candles.append({"time": ts_s * 1000, "open": fill, "high": fill,
                                    "low": fill, "close": fill, "volume": 0})
                continue
            candles.append({"time": ts_s * 1000, "open": _p(c["o"]), "high": _p(c["h"]),
                            "low": _p(c["l"]), "close": _p(c["c"]),
                            "volume": c["v"] / 100_000_000})
        more = bool(candles) and candles[-1]["time"] // 1000 + 60 <= min(end_s, now_s)
        return 200, {"candles": candles, "more_candles": more}


    def historical_funding_rates(self, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        server_time = _iso(self.now_ms)
        if query.get("symbol") != FUTURES_SYMBOL:
            return 400, {"status": "BAD_REQUEST", "result": "error", "serverTime": server_time,
                         "errors": [{"code": 11, "message": "Argument invalid: symbol"}]}
        f = self.funding
        served = int(np.searchsorted(f.ts_ms, self.now_ms, "left"))
        rates = [{"timestamp": _iso(int(f.ts_ms[i])), "fundingRate": float(f.absolute[i]),
                  "relativeFundingRate": float(f.relative[i])} for i in range(served)]
        return 200, {"result": "success", "serverTime": server_time, "rates": rates}


def _iso(ts_ms: int) -> str:
    """Kraken Futures' timestamp format, ``2024-03-01T00:00:00.000Z``."""
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def _p(tenths: int) -> str:
    return f"{tenths // 10}.{tenths % 10}"


def _v(units: int) -> str:
    return f"{units // 100_000_000}.{units % 100_000_000:08d}"


class KrakenHandler(FakeHandler):
    """Kraken's routes and fault bodies: ``LoopbackServer(FakeKraken(...), KrakenHandler)``."""

    def route(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        fake: FakeKraken = self.fake
        spot = {
            "/0/public/Assets": fake.assets,
            "/0/public/AssetPairs": fake.asset_pairs,
            "/0/public/Trades": fake.trades,
            "/0/public/OHLC": fake.ohlc,
        }
        if path in spot:
            return 200, spot[path](query)
        if path == "/derivatives/api/v3/instruments":
            return 200, fake.instruments(query)
        if path == "/derivatives/api/v4/historicalfundingrates":
            return fake.historical_funding_rates(query)
        parts = path.strip("/").split("/")
        if parts[:4] == ["api", "charts", "v1", "trade"] and len(parts) == 6 and parts[5] == "1m":
            return fake.charts(parts[4], query)
        return 404, {"error": [f"EGeneral:Unknown method {path}"]}

    def serve_fault(self, fault: str, path: str) -> None:
        futures = not path.startswith("/0/")
        if fault in ("rate_limit", "unavailable", "busy"):
            spot_error = {"rate_limit": "EAPI:Rate limit exceeded",
                          "unavailable": "EService:Unavailable", "busy": "EService:Busy"}[fault]
            futures_error = {"rate_limit": "apiLimitExceeded", "unavailable": "unavailable",
                             "busy": "unavailable"}[fault]
            body = ({"result": "error", "error": futures_error} if futures
                    else {"error": [spot_error]})
            self.send(200, json.dumps(body).encode())
        elif fault.startswith("http_"):
            status = int(fault[5:])
            self.send(status, f"<html><body>{status} error</body></html>".encode(), "text/html")
        elif fault == "drop":
            self.drop()
        elif fault == "truncate":
            self.truncate(b'{"error": [], "result": {"XXBTZUSD": [["4')

