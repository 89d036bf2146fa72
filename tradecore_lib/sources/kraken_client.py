"""ccxt clients for Kraken spot and Kraken Futures, and the retry policy of every Kraken call.

Everything Kraken-specific about *talking* to Kraken lives here: where the API is
(``TRADECORE_KRAKEN_SPOT_URL`` / ``TRADECORE_KRAKEN_FUTURES_URL``), how fast we may call it,
and which failures are worth waiting out. The sources (:mod:`.kraken_spot`,
:mod:`.kraken_futures`) only say what to fetch.

Public market data needs no API key, so none is ever configured; base URLs may still carry
proxy credentials (``https://user:pass@proxy``). ccxt and requests quote the URL they called in
their errors, so no third-party exception is ever chained to ours: :meth:`KrakenClient.call`
raises ``from None`` with a redacted summary of the cause (:mod:`tradecore_lib.redaction`).

Retries are bounded twice: by ``retry_attempts`` and by ``retry_budget_s`` (a source option,
120 s by default) of total time per call (the last backoff is cut to what is left), so a
permanent outage ends in about two minutes whatever the backoff settings; the final message
says how long it tried.
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import ccxt

from tradecore_lib.errors import ConfigError, TradeCoreError, TransientError
from tradecore_lib.redaction import redact_url, redacted_cause
from tradecore_lib.sources.kraken_options import KrakenOptions

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

# Seconds one call may spend retrying, first request to last, before it gives up.

T = TypeVar("T")


class KrakenError(TradeCoreError, RuntimeError):
    """A Kraken call failed; the message names market, month and what to do."""


class KrakenPermanentError(KrakenError):
    """Retrying cannot help: unknown pair, malformed payload, wrong URL (``retryable`` False).

    ``malformed`` is True when ccxt could not parse the payload (a row of the wrong type).
    """

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.malformed = malformed


class KrakenUnavailableError(KrakenError, TransientError):
    """Transient failures outlasted the retry budget; a re-run resumes from the checkpoint."""


@dataclass
class CallStats:
    """Counters for partition metadata: HTTP requests sent (failed ones included) and retries."""

    requests: int = 0
    retries: int = 0


def base_url(variable: str, default: str) -> str:
    """The host root from ``variable`` (no trailing slash), or Kraken's public default."""
    url = (os.environ.get(variable) or default).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{variable}={redact_url(url)!r} is not an http(s) URL")
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
        clock: monotonic seconds, for the retry budget; tests may replace it.
    """

    exchange: ccxt.Exchange
    root: str = field(repr=False)
    options: KrakenOptions
    stats: CallStats = field(default_factory=CallStats)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    @property
    def api_url(self) -> str:
        """The host root, redacted, for messages and metadata."""
        return redact_url(self.root)

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with exponential backoff and full jitter on transient errors.

        ``what`` names the call for messages, e.g. ``"kraken_spot_btc_usd 2024-03: Trades
        since 1709251140000000000"``. Raises :class:`KrakenPermanentError` at once on a
        permanent error, and :class:`KrakenUnavailableError` when ``retry_attempts`` are used
        up or ``retry_budget_s`` has passed. Both are raised ``from None`` with the cause
        summarized and redacted, so no URL credentials travel in an exception chain.
        """
        started = self.clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified right below
                detail = redacted_cause(exc)
                if not is_transient(exc):
                    raise KrakenPermanentError(
                        f"{what}: {detail}", malformed=isinstance(exc, (TypeError, ValueError))
                    ) from None
                elapsed = self.clock() - started
                if attempt >= self.options.retry_attempts or elapsed >= self.options.retry_budget_s:
                    raise KrakenUnavailableError(
                        f"{what}: Kraken at {self.api_url} still failing after {attempt} "
                        f"attempt(s) over {elapsed:.1f} s (limits: "
                        f"{self.options.retry_attempts} attempts, "
                        f"{self.options.retry_budget_s:.0f} s); last error: {detail}; re-run to "
                        "resume from the checkpoint"
                    ) from None
            self.stats.retries += 1
            # Full jitter (uniform in [0, cap]) spreads retries of parallel runs apart; the
            # last wait is cut to the budget left, so the budget bounds the whole call.
            cap = min(
                self.options.retry_max_delay_s,
                self.options.retry_base_delay_s * 2 ** (attempt - 1),
            )
            self.sleep(min(random.uniform(0.0, cap), self.options.retry_budget_s - elapsed))


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
