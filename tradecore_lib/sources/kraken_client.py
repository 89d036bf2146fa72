"""ccxt clients for Kraken spot and Kraken Futures, and what is Kraken's own in their retries.

Everything Kraken-specific about *talking* to Kraken lives here: where the API is
(``TRADECORE_KRAKEN_SPOT_URL`` / ``TRADECORE_KRAKEN_FUTURES_URL``), how ccxt's URLs map onto
it, and which of Kraken's error bodies are worth waiting out. The retry rule, the
transient/permanent classification and the request counting are every venue's
(:mod:`.ccxt_client`); the sources (:mod:`.kraken_spot`, :mod:`.kraken_futures`) only say what
to fetch.

Retries are bounded twice: by ``retry_attempts`` and by ``retry_budget_s`` (a source option,
120 s by default) of total time per call, so a permanent outage ends in about two minutes
whatever the backoff settings; the final message says how long it tried.
"""

from __future__ import annotations

from typing import ClassVar

import ccxt

from tradecore_lib.sources.ccxt_client import (
    CcxtClient,
    VenueError,
    VenuePermanentError,
    VenueUnavailableError,
    base_url,
    build_exchange,
)
from tradecore_lib.sources.kraken_options import KrakenOptions

__all__ = ["KrakenClient", "KrakenError", "KrakenOptions", "KrakenPermanentError",
           "KrakenUnavailableError", "connect"]

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


class KrakenError(VenueError):
    """A Kraken call failed; the message names market, month and what to do."""


class KrakenPermanentError(KrakenError, VenuePermanentError):
    """Retrying cannot help: unknown pair, malformed payload, wrong URL (``retryable`` False).

    ``malformed`` is True when ccxt could not parse the payload (a row of the wrong type).
    """


class KrakenUnavailableError(KrakenError, VenueUnavailableError):
    """Transient failures outlasted the retry budget; a re-run resumes from the checkpoint."""


class KrakenClient(CcxtClient):
    """A :class:`~.ccxt_client.CcxtClient` raising Kraken's errors, retrying Kraken's bodies."""

    venue: ClassVar[str] = "Kraken"
    permanent_error: ClassVar[type[VenuePermanentError]] = KrakenPermanentError
    unavailable_error: ClassVar[type[VenueUnavailableError]] = KrakenUnavailableError

    def venue_transient(self, message: str) -> bool:
        return any(code in message for code in _TRANSIENT_KRAKEN_ERRORS)


def connect(venue: str, options: KrakenOptions, *, what: str) -> KrakenClient:
    """A :class:`KrakenClient` for ``venue`` (``kraken_spot``/``kraken_futures``), markets loaded.

    Spot maps ``urls['api']['public'/'private']`` to the host root (ccxt appends
    ``/0/public/<Method>``); futures maps ``public``/``private`` to ``<root>/derivatives/api/``,
    ``charts`` to ``<root>/api/charts/`` and ``history`` to ``<root>/api/history/``.
    """
    if venue == "kraken_spot":
        root = base_url(SPOT_URL_VAR, DEFAULT_SPOT_URL)
        exchange = build_exchange(ccxt.kraken, {"public": root, "private": root}, options)
    elif venue == "kraken_futures":
        root = base_url(FUTURES_URL_VAR, DEFAULT_FUTURES_URL)
        exchange = build_exchange(
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

