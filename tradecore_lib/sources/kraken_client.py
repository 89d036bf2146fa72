"""ccxt clients for Kraken spot and Kraken Futures, and the retry policy of every Kraken call.

Everything Kraken-specific about *talking* to Kraken lives here: where the API is
(``TRADECORE_KRAKEN_SPOT_URL`` / ``TRADECORE_KRAKEN_FUTURES_URL``), how fast we may call it,
and which failures are worth waiting out. The sources (:mod:`.kraken_spot`,
:mod:`.kraken_futures`) only say what to fetch.

Public market data needs no API key, so none is ever configured; base URLs may still carry
proxy credentials (``https://user:pass@proxy``), so they are redacted in every message.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import ccxt

from tradecore_lib.options import options_from_mapping
from tradecore_lib.redaction import redact_url

SPOT_URL_VAR = "TRADECORE_KRAKEN_SPOT_URL"
FUTURES_URL_VAR = "TRADECORE_KRAKEN_FUTURES_URL"
DEFAULT_SPOT_URL = "https://api.kraken.com"
DEFAULT_FUTURES_URL = "https://futures.kraken.com"

# Kraken's own error strings (spot ``{"error": [...]}`` bodies, futures ``error`` fields) that
# mean "try again later". ccxt maps most of them onto NetworkError subclasses already; this
# list also catches the ones a ccxt version leaves as a plain ExchangeError.
_TRANSIENT_KRAKEN_ERRORS = (
    "EAPI:Rate limit exceeded",
    "EGeneral:Too many requests",
    "EGeneral:Temporary lockout",
    "EService:Unavailable",
    "EService:Busy",
    "EService:Deadline elapsed",
    "EGeneral:Internal error",
    "EDatabase:Internal error",
    "apiLimitExceeded",
    "unavailable",
)
# HTTP statuses ccxt files under ExchangeNotAvailable that will not heal by waiting
# (a wrong URL or path): retrying them only burns the budget.
_PERMANENT_HTTP_STATUSES = frozenset({400, 401, 403, 404, 405, 410})
_CCXT_HTTP_STATUS = re.compile(r"^\S+ (?:GET|POST|PUT|DELETE) \S+ (\d{3}) ")

T = TypeVar("T")


class KrakenError(RuntimeError):
    """A Kraken call failed; the message names market, month and what to do."""


class KrakenPermanentError(KrakenError):
    """Retrying cannot help: unknown pair, malformed payload, wrong URL."""


class KrakenUnavailableError(KrakenError):
    """Transient failures outlasted the retry budget; a re-run resumes from the checkpoint."""


@dataclass(frozen=True)
class KrakenOptions:
    """Connection and retry knobs, from the ``source:`` mapping of a Kraken market.

    Attributes:
        rate_limit_ms: minimum spacing between requests in milliseconds (ccxt's leaky
            bucket); ``None`` keeps ccxt's value for the exchange, which follows Kraken's
            published public limits (spot 1000 ms, futures 600 ms).
        timeout_ms: HTTP timeout of one request in milliseconds.
        retry_attempts: attempts per call, the first included, before giving up.
        retry_base_delay_s: backoff before the first retry in seconds; doubles per retry.
        retry_max_delay_s: cap of one backoff in seconds.
        trades_page_size: trades per spot ``Trades`` request (Kraken serves at most 1000).
        checkpoint_every_pages: spot trade pages between two checkpoints in the staging area.
        boundary_overlap_s: seconds fetched before the month start, so the first minute is
            built from a cursor that starts before it.
    """

    rate_limit_ms: int | None = None
    timeout_ms: int = 30_000
    retry_attempts: int = 8
    retry_base_delay_s: float = 1.0
    retry_max_delay_s: float = 60.0
    trades_page_size: int = 1000
    checkpoint_every_pages: int = 20
    boundary_overlap_s: int = 60

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], *, market: str) -> KrakenOptions:
        """Build from a market's ``source:`` mapping, rejecting unknown keys by name."""
        options = options_from_mapping(cls, raw, f"market {market}: Kraken source")
        if options.retry_attempts < 1 or not 1 <= options.trades_page_size <= 1000:
            raise ValueError(
                f"market {market}: retry_attempts must be >= 1 and trades_page_size 1..1000"
            )
        return options


@dataclass
class CallStats:
    """Counters for partition metadata: HTTP requests sent (failed ones included) and retries."""

    requests: int = 0
    retries: int = 0


def base_url(variable: str, default: str) -> str:
    """The host root from ``variable`` (no trailing slash), or Kraken's public default."""
    url = (os.environ.get(variable) or default).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{variable}={redact_url(url)!r} is not an http(s) URL")
    return url


class _CountingMixin:
    """Counts every HTTP request ccxt sends (``fetch`` is ccxt's single network entry point)."""

    stats: CallStats

    def fetch(self, *args: Any, **kwargs: Any) -> Any:
        self.stats.requests += 1
        return super().fetch(*args, **kwargs)  # type: ignore[misc]


def _counting(exchange_class: type[ccxt.Exchange]) -> type[ccxt.Exchange]:
    return type(f"Counting{exchange_class.__name__}", (_CountingMixin, exchange_class), {})


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status ccxt wrote into its message (``kraken GET <url> 502 Bad Gateway ...``)."""
    match = _CCXT_HTTP_STATUS.match(str(exc))
    return int(match.group(1)) if match else None


def is_transient(exc: BaseException) -> bool:
    """Whether waiting and retrying ``exc`` can succeed.

    Transient: ccxt NetworkError and its children (timeouts, resets, dropped connections,
    HTTP 429/5xx/520-522, Kraken rate-limit and ``EService`` bodies), and Kraken's transient
    error strings however ccxt classified them. Permanent: everything else, including parse
    failures of a malformed payload (ValueError/TypeError/KeyError raised inside ccxt).
    """
    if isinstance(exc, ccxt.NetworkError):
        return _http_status(exc) not in _PERMANENT_HTTP_STATUSES
    if isinstance(exc, ccxt.ExchangeError) and not isinstance(exc, ccxt.BadRequest):
        return any(code in str(exc) for code in _TRANSIENT_KRAKEN_ERRORS)
    return False


@dataclass
class KrakenClient:
    """One ccxt exchange plus the retry policy and counters of a fetch.

    Attributes:
        exchange: the ccxt exchange, markets loaded.
        root: the host root the exchange talks to (may hold proxy credentials: never log it).
        options: retry and paging knobs.
        stats: requests and retries so far.
        sleep: the backoff sleeper (seconds); tests may replace it.
    """

    exchange: ccxt.Exchange
    root: str = field(repr=False)
    options: KrakenOptions
    stats: CallStats = field(default_factory=CallStats)
    sleep: Callable[[float], None] = time.sleep

    @property
    def api_url(self) -> str:
        """The host root, redacted, for messages and metadata."""
        return redact_url(self.root)

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with exponential backoff and full jitter on transient errors.

        ``what`` names the call for messages, e.g. ``"kraken_spot_btc_usd 2024-03: Trades
        since 1709251140000000000"``. Raises :class:`KrakenPermanentError` at once on a
        permanent error and :class:`KrakenUnavailableError` when the attempts are used up.
        """
        started = time.monotonic()
        for attempt in range(1, self.options.retry_attempts + 1):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified right below
                detail = self._describe(exc)
                if not is_transient(exc):
                    raise KrakenPermanentError(f"{what}: {detail}") from exc
                if attempt == self.options.retry_attempts:
                    raise KrakenUnavailableError(
                        f"{what}: Kraken at {self.api_url} still failing after {attempt} "
                        f"attempts over {time.monotonic() - started:.1f}s (last error: "
                        f"{detail}); re-run to resume from the checkpoint"
                    ) from exc
                self.stats.retries += 1
                # Full jitter (uniform in [0, cap]) spreads retries of parallel runs apart.
                cap = min(
                    self.options.retry_max_delay_s,
                    self.options.retry_base_delay_s * 2 ** (attempt - 1),
                )
                self.sleep(random.uniform(0.0, cap))
        raise AssertionError("unreachable: the loop returns or raises")

    def _describe(self, exc: BaseException) -> str:
        # ccxt puts the request URL into its messages; keep proxy credentials out of them.
        return f"{type(exc).__name__}: {exc}".replace(self.root, self.api_url)[:500]


def _build(
    exchange_class: type[ccxt.Exchange], api_urls: dict[str, str], options: KrakenOptions
) -> ccxt.Exchange:
    # The last JSON body is kept so a row ccxt fails to parse can be named in the error.
    config: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": options.timeout_ms,
        "enableLastJsonResponse": True,
    }
    if options.rate_limit_ms is not None:
        config["rateLimit"] = options.rate_limit_ms
    exchange = _counting(exchange_class)(config)
    exchange.stats = CallStats()
    # Mapped before load_markets so every request, the market list included, goes there.
    exchange.urls["api"].update(api_urls)
    return exchange


def connect(venue: str, options: KrakenOptions, *, what: str) -> KrakenClient:
    """A :class:`KrakenClient` for ``venue`` (``kraken_spot``/``kraken_futures``), markets loaded.

    Spot maps ``urls['api']['public'/'private']`` to the host root (ccxt appends
    ``/0/public/<Method>``); futures maps ``public``/``private`` to ``<root>/derivatives/api/``,
    ``charts`` to ``<root>/api/charts/`` and ``history`` to ``<root>/api/history/``.
    """
    if venue == "kraken_spot":
        root = base_url(SPOT_URL_VAR, DEFAULT_SPOT_URL)
        exchange = _build(ccxt.kraken, {"public": root, "private": root}, options)
    elif venue == "kraken_futures":
        root = base_url(FUTURES_URL_VAR, DEFAULT_FUTURES_URL)
        exchange = _build(
            ccxt.krakenfutures,
            {
                "public": f"{root}/derivatives/api/",
                "private": f"{root}/derivatives/api/",
                "charts": f"{root}/api/charts/",
                "history": f"{root}/api/history/",
            },
            options,
        )
    else:
        raise ValueError(f"{what}: venue {venue!r} is not a Kraken venue")
    client = KrakenClient(exchange, root, options, stats=exchange.stats)
    client.call(f"{what}: load markets", exchange.load_markets)
    return client


def resolve_symbol(client: KrakenClient, symbol: str, *, what: str) -> dict[str, Any]:
    """The ccxt market of ``symbol``, or a permanent error listing close matches."""
    markets = client.exchange.markets or {}
    if symbol in markets:
        return markets[symbol]
    base = symbol.split("/")[0]
    similar = sorted(s for s in markets if s.startswith(f"{base}/"))[:10]
    raise KrakenPermanentError(
        f"{what}: {client.exchange.id} at {client.api_url} lists no market {symbol!r}; "
        f"markets with base {base}: {similar or 'none'}. Fix 'symbol' in configs/markets.yaml."
    )
