"""A loopback Coinbase speaking the public wire formats ``ccxt.coinbase`` reads.

Everything ``load_markets`` and ``fetch_ohlcv`` call, without a key:

- ``/v2/currencies`` (fiat), ``/v2/currencies/crypto`` and ``/v2/exchange-rates``: the
  currency listings ccxt's ``fetch_currencies`` reads (``{"data": ...}`` envelopes);
- ``/api/v3/brokerage/market/products`` (``{"products": [...], "num_products": "N"}``; with
  ``product_type=FUTURE`` an empty list, as for a user without derivatives access);
- ``/api/v3/brokerage/market/products/<PRODUCT>/candles?start=&end=&granularity=`` with
  ``start``/``end`` in Unix seconds: candles whose ``start`` lies in ``[start, end]``
  (``end`` inclusive unless :attr:`FakeCoinbase.inclusive_end` is off), **newest first**,
  every field a string, minutes without trades absent, a minute only once it has closed
  (``publish_lag_ms`` after its end);
  a request spanning more than 350 candles gets Coinbase's HTTP 400 ``INVALID_ARGUMENT``
  body, an unknown product its 404 ``NOT_FOUND``, a bad granularity ``INVALID_ARGUMENT``.

Faults (:data:`FAULTS`) are queued per path prefix (:meth:`FakeCoinbase.inject`) or served
every ``fault_every``-th candles request (:attr:`FakeCoinbase.fault_cycle`), in the shapes
Coinbase answers with: a 429 HTML page (its gateway's rate-limit answer), a 429 JSON
``errors`` list, gRPC-style ``{"error": "INTERNAL" | "UNAVAILABLE", ...}`` 500/503 bodies, a
502 from the edge, a dropped connection and a truncated body.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from tests.fakes.loopback import FakeHandler, FaultSwitches

MINUTE_MS = 60_000
CANDLES_LIMIT = 350  # Coinbase refuses a request for more candles than this
PRODUCTS = ("BTC-USD", "ETH-USD", "SOL-USD")
CANDLES_PATH = "/api/v3/brokerage/market/products/"
FAULTS = (
    "http_429_html",  # the gateway's rate-limit page (HTML, not JSON)
    "rate_limit",  # HTTP 429 {"errors": [{"id": "rate_limit_exceeded", ...}]}
    "internal",  # HTTP 500 {"error": "INTERNAL", ...}
    "unavailable",  # HTTP 503 {"error": "UNAVAILABLE", ...}
    "http_502",
    "drop",  # the connection is closed without a response
    "truncate",  # headers promise more body than is sent, then the connection closes
)


@dataclass(frozen=True)
class Candles:
    """One product's one-minute candles; prices in cents, volumes in 1e-8 units (integers,
    so the strings served and the expected floats involve no rounding of the fake's own)."""

    ts_ms: np.ndarray  # int64, minute starts, ascending, minutes without trades absent
    open_c: np.ndarray
    high_c: np.ndarray
    low_c: np.ndarray
    close_c: np.ndarray
    volume_e8: np.ndarray

    def row(self, i: int) -> dict[str, str]:
        return {"start": str(int(self.ts_ms[i]) // 1000), "low": _cents(self.low_c[i]),
                "high": _cents(self.high_c[i]), "open": _cents(self.open_c[i]),
                "close": _cents(self.close_c[i]), "volume": _units(self.volume_e8[i])}


def generate_candles(seed: int, start_ms: int, end_ms: int, *, level_cents: int = 4_200_000,
                     empty_fraction: float = 0.1,
                     gaps_ms: tuple[tuple[int, int], ...] = ()) -> Candles:
    """Candles of ``[start_ms, end_ms)``: a random walk, ``empty_fraction`` of the minutes
    without trades (absent), and nothing inside the ``gaps_ms`` windows."""
    rng = np.random.default_rng(seed)
    ts = np.arange(start_ms, end_ms, MINUTE_MS, dtype=np.int64)
    keep = rng.random(ts.size) >= empty_fraction
    for gap_start, gap_end in gaps_ms:
        keep &= (ts < gap_start) | (ts >= gap_end)
    ts = ts[keep]
    close = level_cents + np.cumsum(rng.integers(-900, 901, ts.size))
    open_ = close + rng.integers(-300, 301, ts.size)
    high = np.maximum(open_, close) + rng.integers(0, 400, ts.size)
    low = np.minimum(open_, close) - rng.integers(0, 400, ts.size)
    volume = rng.integers(1, 500_000_000, ts.size)
    return Candles(ts, open_.astype(np.int64), high.astype(np.int64), low.astype(np.int64),
                   close.astype(np.int64), volume.astype(np.int64))


class FakeCoinbase(FaultSwitches):
    """The fake venue: candles per product, a clock, fault switches, request counters.

    Attributes:
        now_ms: the venue's present (UTC ms); the minute in progress and later are not served.
        inclusive_end: candles at ``start == end`` are served (ccxt then gets 301 for its
            300-minute window and keeps the first 300); off, ``end`` is exclusive.
        publish_lag_ms: how long after its minute closes a candle is first served.
        malformed_at: a candle time (ms) served with a non-numeric close, or None.
        fault_cycle / fault_every: every ``fault_every``-th candles request gets the next fault.
    """

    def __init__(self, candles: dict[str, Candles], *, now_ms: int) -> None:
        super().__init__(FAULTS, lambda path: path.endswith("/candles"))
        self.candles = candles
        self.now_ms = now_ms
        self.inclusive_end = True
        self.publish_lag_ms = 0
        self.malformed_at: int | None = None
        self.candle_windows: list[tuple[int, int]] = []  # (start s, end s) served

    @property
    def candle_requests(self) -> int:
        return sum(n for path, n in self.requests.items() if path.endswith("/candles"))

    # ----------------------------------------------------------------- endpoints
    def fiat(self) -> dict[str, Any]:
        return {"data": [{"id": "USD", "name": "US Dollar", "min_size": "0.01"},
                         {"id": "EUR", "name": "Euro", "min_size": "0.01"}]}

    def crypto(self) -> dict[str, Any]:
        names = {"BTC": "Bitcoin", "ETH": "Ethereum", "SOL": "Solana"}
        return {"data": [
            {"asset_id": f"00000000-0000-0000-0000-00000000000{i}", "code": code, "name": name,
             "color": "#000000", "sort_index": 100 + i, "exponent": 8, "type": "crypto",
             "address_regex": "^[a-zA-Z0-9]{26,64}$"}
            for i, (code, name) in enumerate(names.items())]}

    def exchange_rates(self) -> dict[str, Any]:
        return {"data": {"currency": "USD", "rates": {
            "USD": "1.0", "EUR": "0.92", "BTC": "0.0000238", "ETH": "0.00029", "SOL": "0.0069"}}}

    def products(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("product_type") == "FUTURE":
            return {"products": [], "num_products": "0"}
        products = [self._product(pid) for pid in PRODUCTS]
        return {"products": products, "num_products": str(len(products))}

    @staticmethod
    def _product(product_id: str) -> dict[str, Any]:
        base, quote = product_id.split("-")
        return {
            "product_id": product_id, "price": "42000.01", "price_percentage_change_24h": "0.5",
            "volume_24h": "10000", "volume_percentage_change_24h": "1.0",
            "base_increment": "0.00000001", "quote_increment": "0.01",
            "quote_min_size": "1", "quote_max_size": "150000000", "base_min_size": "0.00000001",
            "base_max_size": "3400", "base_name": base, "quote_name": quote,
            "watched": False, "is_disabled": False, "new": False, "status": "online",
            "cancel_only": False, "limit_only": False, "post_only": False,
            "trading_disabled": False, "auction_mode": False, "product_type": "SPOT",
            "quote_currency_id": quote, "base_currency_id": base,
            "fcm_trading_session_details": None, "mid_market_price": "",
            "alias": "", "alias_to": [], "base_display_symbol": base,
            "quote_display_symbol": quote, "view_only": False, "price_increment": "0.01",
            "display_name": f"{base}-{quote}", "product_venue": "CBE",
        }

    def candles_of(self, product_id: str, query: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if product_id not in self.candles:
            return 404, _grpc_error("NOT_FOUND", "ProductID not found")
        if query.get("granularity") != "ONE_MINUTE":
            return 400, _grpc_error("INVALID_ARGUMENT",
                                    f"invalid granularity {query.get('granularity')!r}")
        try:
            start_s, end_s = int(query["start"]), int(query["end"])
        except (KeyError, ValueError):
            return 400, _grpc_error("INVALID_ARGUMENT", "start and end are required")
        if (end_s - start_s) // 60 > CANDLES_LIMIT:
            return 400, _grpc_error("INVALID_ARGUMENT", "number of candles requested should "
                                    f"be less than {CANDLES_LIMIT}")
        with self._lock:
            self.candle_windows.append((start_s, end_s))
        c = self.candles[product_id]
        stop_ms = end_s * 1000 + (1 if self.inclusive_end else 0)
        # a minute is served once it closed publish_lag_ms ago (the one in progress never)
        published = self.now_ms - MINUTE_MS - self.publish_lag_ms + 1
        lo = int(np.searchsorted(c.ts_ms, start_s * 1000, side="left"))
        hi = int(np.searchsorted(c.ts_ms, min(stop_ms, published), side="left"))
        rows = [c.row(i) for i in range(hi - 1, lo - 1, -1)]  # newest first, as Coinbase
        if self.malformed_at is not None:
            for row in rows:
                if int(row["start"]) * 1000 == self.malformed_at:
                    row["close"] = "not-a-number"
        return 200, {"candles": rows}


def _grpc_error(code: str, message: str) -> dict[str, str]:
    """The Advanced Trade API's error body (gRPC gateway style)."""
    return {"error": code, "error_details": message, "message": message}


def _cents(value: int) -> str:
    value = int(value)
    return f"{value // 100}.{value % 100:02d}"


def _units(value: int) -> str:
    value = int(value)
    return f"{value // 100_000_000}.{value % 100_000_000:08d}"


class CoinbaseHandler(FakeHandler):
    """Coinbase's routes and fault bodies; serve with ``LoopbackServer(fake, CoinbaseHandler)``."""

    def route(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        fake: FakeCoinbase = self.fake
        fixed = {"/v2/currencies": fake.fiat, "/v2/currencies/crypto": fake.crypto,
                 "/v2/exchange-rates": fake.exchange_rates}
        if path in fixed:
            return 200, fixed[path]()
        if path == "/api/v3/brokerage/market/products":
            return 200, fake.products(query)
        if path.startswith(CANDLES_PATH) and path.endswith("/candles"):
            return fake.candles_of(path[len(CANDLES_PATH):-len("/candles")], query)
        return 404, {"errors": [{"id": "not_found", "message": "Not found"}]}

    def serve_fault(self, fault: str, path: str) -> None:
        if fault == "http_429_html":
            self.send(429, b"<html><head><title>Coinbase</title></head><body>Too many "
                       b"requests</body></html>", "text/html")
        elif fault == "rate_limit":
            body = {"errors": [{"id": "rate_limit_exceeded", "message": "Too many requests"}]}
            self.send(429, json.dumps(body).encode())
        elif fault == "internal":
            self.send(500, json.dumps(_grpc_error("INTERNAL", "internal error")).encode())
        elif fault == "unavailable":
            self.send(503, json.dumps(_grpc_error("UNAVAILABLE", "try again")).encode())
        elif fault == "http_502":
            self.send(502, b"<html><body>502 Bad Gateway</body></html>", "text/html")
        elif fault == "drop":
            self.drop()
        elif fault == "truncate":
            self.truncate(b'{"candles": [{"start": "17')
