"""The venue-neutral half of talking to an exchange through ccxt: one retry rule, one
transient/permanent classification, request counting, base URLs from the environment.

Each venue module (:mod:`.kraken_client`, :mod:`.coinbase`) says only what is its own: the
ccxt class and URL mapping, and which of the venue's own error bodies mean "try again later"
when ccxt leaves them as a plain ``ExchangeError`` (a :class:`VenueProfile`).

Public market data needs no API key, so none is ever configured; base URLs may still carry
proxy credentials (``https://user:pass@proxy``). ccxt and requests quote the URL they called in
their errors, so no third-party exception is ever chained to ours: :meth:`CcxtClient.call`
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
from typing import Any, ClassVar, TypeVar

import ccxt
import numpy as np

from tradecore_lib.errors import ConfigError, TradeCoreError, TransientError
from tradecore_lib.months import MINUTE_MS
from tradecore_lib.redaction import redact_url, redacted_cause
from tradecore_lib.sources.ccxt_options import CcxtOptions

# HTTP statuses ccxt files under ExchangeNotAvailable that will not heal by waiting
# (a wrong URL or path): retrying them only burns the budget.
PERMANENT_HTTP_STATUSES = frozenset({400, 401, 403, 404, 405, 410})
# ccxt's message for an HTTP error it classified by status: "<id> GET <url> 502 Bad Gateway ...".
_CCXT_HTTP_STATUS = re.compile(r"^\S+ (?:GET|POST|PUT|DELETE) \S+ (\d{3}) ")

T = TypeVar("T")


class VenueError(TradeCoreError, RuntimeError):
    """A venue call failed; the message names market, month and what to do."""


class VenuePermanentError(VenueError):
    """Retrying cannot help: unknown pair, malformed payload, wrong URL (``retryable`` False).

    ``malformed`` is True when ccxt could not parse the payload (a row of the wrong type).
    """

    def __init__(self, message: str, *, malformed: bool = False) -> None:
        super().__init__(message)
        self.malformed = malformed


class VenueUnavailableError(VenueError, TransientError):
    """Transient failures outlasted the retry budget; a re-run resumes from the checkpoint."""


@dataclass
class CallStats:
    """Counters for partition metadata: HTTP requests sent (failed ones included) and retries."""

    requests: int = 0
    retries: int = 0


def base_url(variable: str, default: str) -> str:
    """The host root from ``variable`` (no trailing slash), or the venue's public default.

    Raises:
        ConfigError: the value is not an http(s) URL (shown redacted).
    """
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


def http_status(exc: BaseException) -> int | None:
    """The HTTP status ccxt wrote into its message (``kraken GET <url> 502 Bad Gateway ...``),
    or None where ccxt raised from the body (its message is then ``<id> <body>``)."""
    match = _CCXT_HTTP_STATUS.match(str(exc))
    return int(match.group(1)) if match else None


def is_transient(exc: BaseException, venue_transient: Callable[[str], bool]) -> bool:
    """Whether waiting and retrying ``exc`` can succeed.

    Transient: ccxt NetworkError and its children (timeouts, resets, dropped connections,
    HTTP 429/5xx/520-522, rate-limit bodies ccxt maps itself) unless their HTTP status says the
    URL is wrong, and a plain ccxt ``ExchangeError`` whose message ``venue_transient`` accepts
    (the venue's own "busy"/"rate limit" bodies that ccxt does not map). Permanent: everything
    else, including ``BadRequest`` and parse failures of a malformed payload
    (ValueError/TypeError/KeyError raised inside ccxt).
    """
    if isinstance(exc, ccxt.NetworkError):
        return http_status(exc) not in PERMANENT_HTTP_STATUSES
    if isinstance(exc, ccxt.ExchangeError) and not isinstance(exc, ccxt.BadRequest):
        return venue_transient(str(exc))
    return False


@dataclass
class CcxtClient:
    """One ccxt exchange plus the retry policy and counters of a fetch.

    Subclasses name the venue (``venue``), its error classes and its transient error bodies
    (:meth:`venue_transient`); the retry rule is this one for every venue.

    Attributes:
        exchange: the ccxt exchange, markets loaded.
        root: the host root the exchange talks to (may hold proxy credentials: never log it).
        options: retry and timeout knobs (a venue's ``source:`` options model).
        stats: requests and retries so far.
        sleep: the backoff sleeper (seconds); tests may replace it.
        clock: monotonic seconds, for the retry budget; tests may replace it.
    """

    venue: ClassVar[str] = "the venue"
    permanent_error: ClassVar[type[VenuePermanentError]] = VenuePermanentError
    unavailable_error: ClassVar[type[VenueUnavailableError]] = VenueUnavailableError

    exchange: ccxt.Exchange
    root: str = field(repr=False)
    options: CcxtOptions
    stats: CallStats = field(default_factory=CallStats)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic

    @property
    def api_url(self) -> str:
        """The host root, redacted, for messages and metadata."""
        return redact_url(self.root)

    def venue_transient(self, message: str) -> bool:
        """Whether a plain ccxt ``ExchangeError`` with ``message`` is worth retrying."""
        return False

    def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` with exponential backoff and full jitter on transient errors.

        ``what`` names the call for messages, e.g. ``"kraken_spot_btc_usd 2024-03: Trades
        since 1709251140000000000"``. Raises :attr:`permanent_error` at once on a permanent
        error, and :attr:`unavailable_error` when ``retry_attempts`` are used up or
        ``retry_budget_s`` has passed. Both are raised ``from None`` with the cause summarized
        and redacted, so no URL credentials travel in an exception chain.
        """
        started = self.clock()
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified right below
                detail = redacted_cause(exc)
                if not is_transient(exc, self.venue_transient):
                    raise self.permanent_error(
                        f"{what}: {detail}", malformed=isinstance(exc, (TypeError, ValueError))
                    ) from None
                elapsed = self.clock() - started
                if attempt >= self.options.retry_attempts or elapsed >= self.options.retry_budget_s:
                    raise self.unavailable_error(
                        f"{what}: {self.venue} at {self.api_url} still failing after {attempt} "
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


def build_exchange(
    exchange_class: type[ccxt.Exchange], api_urls: dict[str, str], options: CcxtOptions,
    **config: Any,
) -> ccxt.Exchange:
    """An instance of ``exchange_class`` that counts its requests (``exchange.stats``), with
    ``urls['api']`` updated by ``api_urls`` before anything is fetched, so every request (the
    market list included) goes there. ``config`` adds ccxt constructor settings."""
    # The last JSON body is kept so a row ccxt fails to parse can be named in the error.
    settings: dict[str, Any] = {
        "enableRateLimit": True,
        "timeout": options.timeout_ms,
        "enableLastJsonResponse": True,
        **config,
    }
    if options.rate_limit_ms is not None:
        settings["rateLimit"] = options.rate_limit_ms
    exchange = _counting(exchange_class)(settings)
    exchange.stats = CallStats()
    exchange.urls["api"].update(api_urls)
    return exchange


def resolve_symbol(client: CcxtClient, symbol: str, *, what: str) -> dict[str, Any]:
    """The ccxt market of ``symbol``, or a permanent error listing close matches."""
    markets = client.exchange.markets or {}
    if symbol in markets:
        return markets[symbol]
    base = symbol.split("/")[0]
    similar = sorted(s for s in markets if s.startswith(f"{base}/"))[:10]
    raise client.permanent_error(
        f"{what}: {client.exchange.id} at {client.api_url} lists no market {symbol!r}; "
        f"markets with base {base}: {similar or 'none'}. Fix 'symbol' in configs/markets.yaml."
    )


def ohlcv_array(rows: list[list[Any]], call: str, error: type[VenuePermanentError]
                ) -> np.ndarray:
    """ccxt OHLCV rows as a float array sorted by time, or ``error`` naming the first
    malformed candle: prices positive numbers (a zero-volume fill may carry any price),
    volume >= 0, time on the minute."""
    try:
        candles = np.array(rows, dtype=np.float64).reshape(-1, 6)
    except (TypeError, ValueError) as exc:
        raise error(f"{call}: malformed payload: {exc}", malformed=True) from None
    volume_ok = np.isfinite(candles[:, 5]) & (candles[:, 5] >= 0)
    prices_ok = (np.isfinite(candles[:, 1:5]) & (candles[:, 1:5] > 0)).all(axis=1)
    bad = np.flatnonzero(~volume_ok | (~prices_ok & (candles[:, 5] > 0))
                         | (candles[:, 0] % MINUTE_MS != 0))
    if bad.size:
        row = int(bad[0])
        raise error(
            f"{call}: malformed payload, candle row {row} of {len(candles)} is {rows[row]} "
            "(prices must be positive numbers, volume >= 0, time on the minute)"
        )
    return candles[np.argsort(candles[:, 0], kind="stable")]
