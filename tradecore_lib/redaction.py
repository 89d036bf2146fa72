"""The one redaction layer: every secret TradeCore knows of, kept out of messages and logs.

What counts as a secret:

- credentials in any URL (``scheme://user:password@host``, ``scheme://token@host``), wherever
  the URL appears in a text;
- the values of the secret environment variables in :data:`SECRET_VARIABLES` (RunPod and
  S3/AWS keys, MLflow and Weights & Biases credentials, alert webhook and Telegram tokens) and
  of every ``TRADECORE_*`` variable whose name says it holds one (``..._TOKEN``, ``..._KEY``,
  ``..._SECRET``, ``..._PASSWORD``, ``..._WEBHOOK``);
- the user-info part of any URL-valued environment variable (``TRADECORE_KRAKEN_SPOT_URL``,
  ``MLFLOW_TRACKING_URI``...), also where it appears outside its URL;
- secret-looking query parameters of a URL (``?token=``, ``?api_key=``, ``?signature=``).

Values are read from the environment at each call, so a variable set after import is
covered. Exceptions are the other way secrets travel: a third-party error (``requests``,
ccxt, boto3) often quotes the URL it called, and Dagster stores an exception *with its
chain*. :func:`redacted_cause` summarizes such a cause in one redacted line, and project code
raises its own error ``from None`` with that summary in the message, so the unredacted
original never reaches the event log. :class:`RedactingFilter` is the logging-side net.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
SECRET_VARIABLES = (
    "RUNPOD_API_KEY",
    "TRADECORE_RUNPOD_S3_ACCESS_KEY_ID",
    "TRADECORE_RUNPOD_S3_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "WANDB_API_KEY",
    "TRADECORE_ALERT_WEBHOOK",
    "TRADECORE_TELEGRAM_BOT_TOKEN",
)
_SECRET_NAME = re.compile(r"^TRADECORE_\w*(TOKEN|KEY|SECRET|PASSWORD|WEBHOOK)$")
# Query parameters whose value is a credential (matched case-insensitively, as substrings).
_SECRET_QUERY_KEYS = ("token", "key", "secret", "password", "passwd", "signature", "sig", "auth")
# scheme://userinfo@ : userinfo holds neither "/", "@" nor whitespace (RFC 3986).
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/\s@]+)@")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# Shorter values are not masked: masking "1" or "abc" everywhere would garble messages, and
# a real credential is longer.
_MIN_SECRET_LENGTH = 4


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret strings the environment holds now, longest first (so no masked fragment of
    a longer secret is left behind), in their raw and percent-decoded forms."""
    env = os.environ if environ is None else environ
    values: set[str] = set()
    for name, value in env.items():
        if not value:
            continue
        if name in SECRET_VARIABLES or _SECRET_NAME.match(name):
            values.add(value)
        if "://" in value:
            userinfo = _userinfo(value)
            if userinfo:
                values.add(userinfo)
                values.update(part for part in userinfo.split(":", 1) if part)
    values |= {unquote(v) for v in values}
    return sorted((v for v in values if len(v) >= _MIN_SECRET_LENGTH), key=len, reverse=True)


def _userinfo(url: str) -> str:
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return ""
    return netloc.rsplit("@", 1)[0] if "@" in netloc else ""


def redact_url(url: str) -> str:
    """``url`` without user name, password and secret-looking query values, safe to show."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    secret_query = any(_secret_query_key(k) for k, _ in pairs)
    if "@" not in parts.netloc and not secret_query:
        return url  # unchanged, byte for byte (urlunsplit would turn sqlite:/// into sqlite:/)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if secret_query:
        query = urlencode(
            [(k, MASK if _secret_query_key(k) else v) for k, v in pairs], safe="*"
        )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _secret_query_key(key: str) -> bool:
    lowered = key.lower()
    return any(word in lowered for word in _SECRET_QUERY_KEYS)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every known secret masked as ``***``.

    Args:
        text: any message, log line or exception text.
        extra: further secret values to mask (for a secret not held in the environment).
    """
    if not text:
        return text
    text = _URL_USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _URL.sub(lambda m: redact_url(m.group(0)) if "?" in m.group(0) else m.group(0), text)
    for value in [*sorted(extra, key=len, reverse=True), *secret_values()]:
        if len(value) >= _MIN_SECRET_LENGTH and value in text:
            text = text.replace(value, MASK)
    return text


def redacted_cause(exc: BaseException, *, limit: int = 500) -> str:
    """One redacted line naming ``exc`` and its own causes: ``Type: message <- Cause: ...``.

    Meant for ``raise ProjectError(f"...: {redacted_cause(exc)}") from None``: the summary
    keeps what a user needs (which error, what it said) while the unredacted exception chain
    is dropped, so Dagster never serializes it.
    """
    parts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(parts) < 4:
        seen.add(id(current))
        message = " ".join(str(current).split())
        parts.append(f"{type(current).__name__}: {message}" if message else type(current).__name__)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    summary = redact(" <- ".join(parts))
    return summary if len(summary) <= limit else summary[: limit - 3] + "..."


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (arguments merged in) and its
    exception text, for handlers whose output leaves the process (files, the Dagster UI)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None:
            # Rendered once here, redacted, so handlers never format the raw traceback.
            formatted = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(formatted)
            record.exc_info = None
        return True


def install_filter(*loggers: logging.Logger | str) -> RedactingFilter:
    """Add one :class:`RedactingFilter` to ``loggers`` (names or objects) and their handlers."""
    redacting = RedactingFilter()
    for target in loggers:
        logger = logging.getLogger(target) if isinstance(target, str) else target
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(redacting)
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(redacting)
    return redacting
