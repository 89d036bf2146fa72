"""The one base of TradeCore's errors, and whether a retry can help.

Every error the project raises for a user derives from :class:`TradeCoreError`; its message is
written for the user (what was wrong, where, what to do). ``retryable`` says whether trying the
same thing again can succeed: configuration mistakes, malformed payloads, unknown pairs and
failed checks are permanent (``False``); outages and rate limits are transient (``True``). The
Dagster layer turns a permanent error into a step failure that is never retried.
"""

from __future__ import annotations


class TradeCoreError(Exception):
    """A user-facing TradeCore error; ``retryable`` is False unless a subclass says otherwise."""

    retryable: bool = False


class ConfigError(TradeCoreError, ValueError):
    """A configuration file or launchpad value is missing, malformed or out of range."""


class TransientError(TradeCoreError):
    """A fault that can clear by itself (an outage, a rate limit): a retry can help."""

    retryable = True
