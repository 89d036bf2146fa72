"""How a TradeCore error becomes a Dagster step failure: retried only when a retry can help.

Live markets' candles carry a Dagster ``RetryPolicy`` for outages that outlast the sources'
own retries. A permanent error (an unknown pair, a malformed payload, a 404, a bad
configuration, a failed check, bad rows) must not wait through it: every asset that calls a
source or consumes checked data runs its work inside :func:`step_failures`, which turns a
:class:`~tradecore_lib.errors.TradeCoreError` into ``dg.Failure(allow_retries=error.retryable)``.
The failure carries the error's message, redacted, and is raised ``from None``: the original
exception (which a third-party library may have built from a URL with credentials) is not
stored in the event log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from tradecore_lib.errors import TradeCoreError
from tradecore_lib.redaction import redact

# The Dagster retry of assets that call a live venue (candles, funding): for an outage that
# outlasts the sources' own retries. Only retryable errors reach it (step_failures).
VENUE_RETRY = dg.RetryPolicy(
    max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


@contextmanager
def step_failures() -> Iterator[None]:
    """Run the block; a :class:`TradeCoreError` inside fails the step, retried only if the
    error is ``retryable``. Other exceptions (bugs) pass through unchanged."""
    try:
        yield
    except TradeCoreError as exc:
        raise dg.Failure(
            description=redact(str(exc)),
            metadata={"error": type(exc).__name__, "retryable": exc.retryable},
            allow_retries=exc.retryable,
        ) from None
