"""Alerts: one JSON record per alert under ``data/alerts/``, delivered to a webhook and Telegram.

Anything that needs a person's attention (a failed run, a champion whose live performance
fell behind its validation, a retraining that gave up) calls :func:`raise_alert` with an
:class:`Alert`. The record is written first, so an alert is never lost to a receiver that is
down, then delivered to every configured channel, and written again with each channel's
:class:`Delivery` status::

    data/alerts/<YYYYMMDDTHHMMSSZ>-<kind>-<12 hex>.json

Channels (read from the environment by :meth:`AlertSettings.from_env`):

- **webhook**, when ``TRADECORE_ALERT_WEBHOOK`` is set: ``POST`` of the record as JSON
  (:meth:`AlertRecord.payload`: every field but the delivery bookkeeping, plus a one-line
  ``text`` that Slack- and Mattermost-style incoming webhooks display as it is). Any 2xx is
  delivered.
- **telegram**, when ``TRADECORE_TELEGRAM_BOT_TOKEN`` and ``TRADECORE_TELEGRAM_CHAT_ID`` are
  set: the Bot API's ``POST <base>/bot<token>/sendMessage`` with ``chat_id`` and ``text``
  (plain text, at most 4096 characters); ``TRADECORE_TELEGRAM_API_BASE`` overrides the base
  (default ``https://api.telegram.org``). Delivered when Telegram answers ``{"ok": true}``.

Retries happen only where a retry can help: a connection error, a timeout, a 5xx, a 408 or a
429 (waiting what ``retry_after`` / ``Retry-After`` asks when that fits the time budget). A
4xx (a wrong token, an unknown chat, a refused payload) is permanent: it is recorded, never
retried. Each channel gets at most ``attempts`` requests and ``budget_s`` seconds per alert,
and a channel that just failed is not tried again by the same :class:`AlertSender` for
``pause_s`` seconds, so a sensor tick raising many alerts while a receiver is down is not
blocked behind one timeout each. A failed delivery never raises: the record says
``undelivered`` with the reason, and :func:`retry_undelivered` (the alert redelivery sensor)
tries the retryable ones again a bounded number of times.

Secrets never reach a record, a log line or an exception: every text of an alert is redacted
(:func:`tradecore_lib.redaction.redact`) when the alert is built; the webhook URL and the bot
token (which Telegram puts in the URL path, where ``requests`` quotes it in its exception
messages and urllib3 in its debug log) are masked in every reason recorded and in the HTTP
libraries' log records (:func:`install_http_log_redaction`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pyarrow.fs as pafs
import requests
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tradecore_lib.lake import write_atomically
from tradecore_lib.months import iso_utc, utc_now_ms
from tradecore_lib.paths import data_dir
from tradecore_lib.redaction import RedactingFilter, redact

log = logging.getLogger("tradecore.alerts")

# Alert kinds raised by TradeCore itself; any lower_snake_case kind is accepted.
RUN_FAILURE = "run_failure"
CHAMPION_DEGRADED = "champion_degraded"
RETRAINING_GAVE_UP = "retraining_gave_up"

WEBHOOK = "webhook"
TELEGRAM = "telegram"
CHANNELS = (WEBHOOK, TELEGRAM)
DELIVERED = "delivered"
UNDELIVERED = "undelivered"

WEBHOOK_VARIABLE = "TRADECORE_ALERT_WEBHOOK"
TELEGRAM_TOKEN_VARIABLE = "TRADECORE_TELEGRAM_BOT_TOKEN"
TELEGRAM_CHAT_VARIABLE = "TRADECORE_TELEGRAM_CHAT_ID"
TELEGRAM_BASE_VARIABLE = "TRADECORE_TELEGRAM_API_BASE"
TELEGRAM_API = "https://api.telegram.org"
TELEGRAM_TEXT_LIMIT = 4096  # sendMessage: 1-4096 characters
MESSAGE_LIMIT = 2000  # characters of an error message kept in a record
REASON_LIMIT = 300  # characters of a delivery failure's reason
_KIND = re.compile(r"^[a-z][a-z0-9_]*$")
_FILE = re.compile(r"^\d{8}T\d{6}Z-[a-z][a-z0-9_]*-[0-9a-f]{12}\.json$")
# Answers worth another try: the receiver is busy, restarting or rate limiting.
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


# ------------------------------------------------------------------------------- records
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlertError(_Model):
    """An error as an alert shows it: the exception's class name and its (redacted) message."""

    class_name: str = Field(description="Exception class name, e.g. 'ValueError'.")
    message: str = Field(description="The message, one line, redacted, at most 2000 chars.")

    @field_validator("class_name", "message")
    @classmethod
    def _redacted(cls, value: str) -> str:
        return _clip(redact(" ".join(value.split())), MESSAGE_LIMIT)

    @classmethod
    def of(cls, exc: BaseException) -> AlertError:
        """The alert form of ``exc`` (its own message; the cause chain is not kept)."""
        return cls(class_name=type(exc).__name__, message=str(exc))


class FailedStep(_Model):
    """One failed step of a run: the op's step key, the asset it materializes, its error."""

    step: str
    asset: str | None = Field(default=None, description="Asset key, '<market>/<layer>'.")
    error: AlertError | None = None


Detail = str | int | float | bool | None


class Alert(_Model):
    """What happened, for a person: the input of :func:`raise_alert`.

    Every text is redacted when the alert is built, so no secret can reach the record, the
    webhook or Telegram whatever the caller passes.
    """

    kind: str = Field(description="lower_snake_case: run_failure, champion_degraded, "
                      "retraining_gave_up, ...")
    summary: str = Field(description="One sentence saying what happened and where.")
    market: str | None = Field(default=None, description="The market concerned, if one.")
    run_id: str | None = Field(default=None, description="The Dagster run concerned.")
    job: str | None = Field(default=None, description="The Dagster job of that run.")
    step: str | None = Field(default=None, description="The (first) failed step: op or asset.")
    partition: str | None = Field(default=None, description="The run's partition key.")
    error: AlertError | None = Field(default=None, description="The (first) error.")
    failed_steps: tuple[FailedStep, ...] = Field(
        default=(), description="Every failed step of the run, with its error.")
    details: dict[str, Detail] = Field(
        default_factory=dict, description="Further facts (metrics, months, limits), flat.")
    time: str = Field(default_factory=lambda: iso_utc(utc_now_ms()),
                      description="When it happened, UTC ISO 8601 (months.iso_utc).")

    @field_validator("kind")
    @classmethod
    def _kind(cls, kind: str) -> str:
        if not _KIND.match(kind):
            raise ValueError(f"alert kind {kind!r} must be lower_snake_case, e.g. "
                             f"{RUN_FAILURE!r}")
        return kind

    @field_validator("summary", "market", "run_id", "job", "step", "partition")
    @classmethod
    def _redact_text(cls, value: str | None) -> str | None:
        return None if value is None else _clip(redact(value), MESSAGE_LIMIT)

    @field_validator("details")
    @classmethod
    def _redact_details(cls, details: dict[str, Detail]) -> dict[str, Detail]:
        return {key: _clip(redact(v), MESSAGE_LIMIT) if isinstance(v, str) else v
                for key, v in details.items()}

    @field_validator("time")
    @classmethod
    def _iso_time(cls, value: str) -> str:
        _parse_time(value)
        return value


class Delivery(_Model):
    """The delivery state of one channel of one alert."""

    channel: Literal["webhook", "telegram"]
    status: Literal["delivered", "undelivered"] = UNDELIVERED
    retryable: bool = Field(default=True, description="Whether a later tick may try again "
                            "(False after a permanent refusal, a configuration error, or "
                            "once the redelivery bound is reached).")
    attempts: int = Field(default=0, ge=0, description="HTTP requests made, all rounds.")
    rounds: int = Field(default=0, ge=0, description="Delivery rounds that made a request.")
    reason: str = Field(default="not attempted yet", description="Why undelivered (redacted);"
                        " empty once delivered.")
    http_status: int | None = Field(default=None, description="Status of the last answer.")
    last_attempt_at: str | None = None
    delivered_at: str | None = None
    next_attempt_after: str | None = Field(
        default=None, description="Not before this time (a receiver's retry_after).")

    @field_validator("reason")
    @classmethod
    def _redacted(cls, value: str) -> str:
        return _clip(redact(value), REASON_LIMIT)


class AlertRecord(Alert):
    """An alert as stored in ``data/alerts/<alert_id>.json``: the alert and its deliveries."""

    schema_version: Literal[1] = 1
    alert_id: str = Field(description="<YYYYMMDDTHHMMSSZ>-<kind>-<12 hex>, the file's name.")
    deliveries: dict[str, Delivery] = Field(
        default_factory=dict, description="Channel -> its delivery; channels that were not "
        "configured when the alert was raised are absent.")

    @property
    def delivered(self) -> bool:
        """Whether every configured channel has it (True with no channel configured)."""
        return all(d.status == DELIVERED for d in self.deliveries.values())

    def pending(self) -> list[str]:
        """Channels still worth a try: undelivered and retryable."""
        return [c for c, d in self.deliveries.items() if d.status == UNDELIVERED and d.retryable]

    def payload(self) -> dict[str, Any]:
        """What the webhook receives: the record without its delivery bookkeeping, plus
        ``text`` (the one-line form, what chat-style webhooks display)."""
        body = self.model_dump(mode="json", exclude={"deliveries"})
        body["text"] = self.headline()
        return body

    def headline(self) -> str:
        """``[TradeCore] run_failure synthetic_btc_usd: <summary>`` on one line."""
        where = f" {self.market}" if self.market else ""
        return f"[TradeCore] {self.kind}{where}: {self.summary}"

    def text(self) -> str:
        """The message a person reads (Telegram): headline, run, step, error, time."""
        lines = [self.headline()]
        if self.run_id:
            lines.append(f"run {self.run_id}" + (f" (job {self.job})" if self.job else ""))
        for failed in self.failed_steps or ():
            error = f": {failed.error.class_name}: {failed.error.message}" if failed.error else ""
            lines.append(f"step {failed.step}" + (f" [{failed.asset}]" if failed.asset else "")
                         + error)
        if not self.failed_steps and self.error is not None:
            lines.append(f"{self.error.class_name}: {self.error.message}")
        lines.extend(f"{key}: {value}" for key, value in self.details.items())
        lines.append(f"at {self.time} - alert {self.alert_id}")
        return _clip("\n".join(lines), TELEGRAM_TEXT_LIMIT)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2) + "\n"


# ------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go and how hard delivery tries.

    Attributes:
        folder: where the records are written (``<data_dir>/alerts``).
        webhook_url: the webhook (a secret: never shown), or None.
        telegram_token: the bot token (a secret), or None.
        telegram_chat_id: the chat receiving the messages, or None.
        telegram_api_base: the Bot API base URL.
        timeout_s: connect and read timeout of one request, seconds.
        attempts: requests per channel per delivery round (>= 1).
        backoff_s: wait before the second request, doubled for each further one, seconds.
        budget_s: the most one channel may take for one alert, waits included, seconds.
        pause_s: after a transient failure, the same sender skips the channel this long.
    """

    folder: Path
    webhook_url: str | None = field(default=None, repr=False)
    telegram_token: str | None = field(default=None, repr=False)
    telegram_chat_id: str | None = None
    telegram_api_base: str = TELEGRAM_API
    timeout_s: float = 5.0
    attempts: int = 3
    backoff_s: float = 0.5
    budget_s: float = 10.0
    pause_s: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.timeout_s <= 0 or self.budget_s <= 0 or self.backoff_s < 0:
            raise ValueError("AlertSettings: attempts >= 1, timeout_s > 0, budget_s > 0 and "
                             "backoff_s >= 0 are required")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any
                 ) -> AlertSettings:
        """Settings from ``TRADECORE_ALERT_WEBHOOK``, ``TRADECORE_TELEGRAM_BOT_TOKEN``,
        ``TRADECORE_TELEGRAM_CHAT_ID`` and ``TRADECORE_TELEGRAM_API_BASE`` (empty = unset);
        ``overrides`` replace any field (tests shorten timeouts)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "folder": data_dir() / "alerts",
            "webhook_url": env.get(WEBHOOK_VARIABLE, "").strip() or None,
            "telegram_token": env.get(TELEGRAM_TOKEN_VARIABLE, "").strip() or None,
            "telegram_chat_id": env.get(TELEGRAM_CHAT_VARIABLE, "").strip() or None,
            "telegram_api_base": env.get(TELEGRAM_BASE_VARIABLE, "").strip() or TELEGRAM_API,
        }
        values.update(overrides)
        return cls(**values)

    def channels(self) -> list[str]:
        """The channels set up, even partly (a half-configured Telegram is reported on each
        alert as undelivered with what is missing, rather than silently dropped)."""
        configured = [WEBHOOK] if self.webhook_url else []
        if self.telegram_token or self.telegram_chat_id:
            configured.append(TELEGRAM)
        return configured

    def secrets(self) -> list[str]:
        """The secret values to mask in any text: the webhook URL and the bot token."""
        return [s for s in (self.webhook_url, self.telegram_token) if s]


# ---------------------------------------------------------------- log redaction for HTTP
class _SecretsFilter(RedactingFilter):
    """:class:`RedactingFilter` that also masks the alert secrets given to it (settings
    built in code, not read from the environment, are masked too)."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        super().filter(record)
        message = record.getMessage()
        masked = redact(message, extra=self.secrets)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text, extra=self.secrets)
        return True


_HTTP_FILTER = _SecretsFilter()
# urllib3 logs each request line ("POST /bot<token>/sendMessage HTTP/1.1" 200) at DEBUG.
_HTTP_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry", "urllib3", "requests")


def install_http_log_redaction(secrets: Iterable[str] = ()) -> None:
    """Mask ``secrets`` (and every environment secret) in the log records of urllib3 and
    requests: logger filters apply before records propagate to any handler."""
    _HTTP_FILTER.secrets.update(s for s in secrets if s)
    for name in _HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _HTTP_FILTER not in logger.filters:
            logger.addFilter(_HTTP_FILTER)


# ------------------------------------------------------------------------------- delivery
@dataclass
class _Outcome:
    delivered: bool
    retryable: bool
    reason: str
    http_status: int | None = None
    retry_after_s: float | None = None


class AlertSender:
    """Delivers records to the channels of ``settings``.

    One sender remembers which channels failed transiently in the last ``pause_s`` seconds
    and skips them (recording why), so many alerts in one sensor tick wait for a dead
    receiver once, not once each. ``sleep`` and ``clock`` are injectable for tests.
    """

    def __init__(self, settings: AlertSettings, *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._sleep = sleep
        self._clock = clock
        self._paused: dict[str, tuple[float, str]] = {}  # channel -> (until, why)
        install_http_log_redaction(settings.secrets())

    def deliver(self, record: AlertRecord, channels: Iterable[str] | None = None
                ) -> AlertRecord:
        """``record`` with each pending channel (or only ``channels``) attempted once more;
        never raises for a receiver's failure."""
        wanted = record.pending() if channels is None else list(channels)
        deliveries = dict(record.deliveries)
        for channel in wanted:
            current = deliveries.get(channel, Delivery(channel=channel))  # type: ignore[arg-type]
            deliveries[channel] = self._deliver_channel(record, current)
        return record.model_copy(update={"deliveries": deliveries})

    def _deliver_channel(self, record: AlertRecord, current: Delivery) -> Delivery:
        channel = current.channel
        problem = self._configuration_problem(channel)
        if problem:
            return current.model_copy(update={"retryable": False, "reason": problem})
        paused = self._paused.get(channel)
        if paused is not None and self._clock() < paused[0]:
            return current.model_copy(update={
                "reason": f"not attempted: {channel} failed moments ago ({paused[1]}); "
                "a later tick retries"})
        if channel == WEBHOOK:
            url = self.settings.webhook_url or ""
            body = record.payload()
        else:
            url = (f"{self.settings.telegram_api_base.rstrip('/')}/bot"
                   f"{self.settings.telegram_token}/sendMessage")
            body = {"chat_id": self.settings.telegram_chat_id, "text": record.text()}
        attempts, outcome = self._post(channel, url, body)
        now = iso_utc(utc_now_ms())
        update: dict[str, Any] = {
            "attempts": current.attempts + attempts,
            "rounds": current.rounds + (attempts > 0),
            "http_status": outcome.http_status,
            "last_attempt_at": now if attempts else current.last_attempt_at,
        }
        if outcome.delivered:
            self._paused.pop(channel, None)
            update.update(status=DELIVERED, retryable=False, reason="", delivered_at=now,
                          next_attempt_after=None)
        else:
            update.update(retryable=outcome.retryable, reason=outcome.reason,
                          next_attempt_after=None)
            if outcome.retry_after_s:
                update["next_attempt_after"] = iso_utc(
                    utc_now_ms() + round(outcome.retry_after_s * 1000))
            if outcome.retryable:
                self._paused[channel] = (self._clock() + self.settings.pause_s, outcome.reason)
        return current.model_copy(update=update)

    def _configuration_problem(self, channel: str) -> str:
        s = self.settings
        if channel == WEBHOOK:
            if not s.webhook_url:
                return f"not configured: {WEBHOOK_VARIABLE} is unset"
            if not s.webhook_url.lower().startswith(("http://", "https://")):
                return f"{WEBHOOK_VARIABLE} is not an http(s) URL; fix it to deliver alerts"
            return ""
        missing = [name for name, value in ((TELEGRAM_TOKEN_VARIABLE, s.telegram_token),
                                            (TELEGRAM_CHAT_VARIABLE, s.telegram_chat_id))
                   if not value]
        if missing:
            return f"not configured: {' and '.join(missing)} unset (Telegram needs both)"
        if not s.telegram_api_base.lower().startswith(("http://", "https://")):
            return f"{TELEGRAM_BASE_VARIABLE} is not an http(s) URL"
        return ""

    def _post(self, channel: str, url: str, body: dict[str, Any]) -> tuple[int, _Outcome]:
        """POST ``body`` with bounded retries; (requests made, final outcome)."""
        s = self.settings
        deadline = self._clock() + s.budget_s
        outcome = _Outcome(False, True, "not attempted: no time left in the delivery budget")
        made = 0
        with requests.Session() as session:
            for attempt in range(1, s.attempts + 1):
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                made += 1
                timeout = min(s.timeout_s, remaining)
                outcome = self._request_once(session, channel, url, body, timeout)
                if outcome.delivered or not outcome.retryable or attempt == s.attempts:
                    break
                wait = (outcome.retry_after_s if outcome.retry_after_s is not None
                        else s.backoff_s * 2 ** (attempt - 1))
                if self._clock() + wait >= deadline:
                    outcome.reason += f"; next try would be in {wait:.3g} s, past the budget"
                    break
                self._sleep(wait)
        if not outcome.delivered:
            outcome.reason = f"{outcome.reason} (after {made} request(s))"
        return made, outcome

    def _request_once(self, session: requests.Session, channel: str, url: str,
                      body: dict[str, Any], timeout: float) -> _Outcome:
        secrets = self.settings.secrets()
        try:
            with session.post(url, json=body, timeout=(timeout, timeout),
                              allow_redirects=False) as response:
                return (_webhook_outcome(response) if channel == WEBHOOK
                        else _telegram_outcome(response))
        except (requests.ConnectionError, requests.Timeout) as exc:
            # requests quotes the URL (with Telegram's token in its path) in these messages.
            return _Outcome(False, True, _safe(f"{type(exc).__name__}: {exc}", secrets))
        except requests.RequestException as exc:  # an invalid URL: no retry can fix it
            return _Outcome(False, False, _safe(f"{type(exc).__name__}: {exc}", secrets))


def _webhook_outcome(response: requests.Response) -> _Outcome:
    status = response.status_code
    if 200 <= status < 300:
        return _Outcome(True, False, "", status)
    answer = " ".join(response.text[:200].split())
    retry_after = _seconds(response.headers.get("Retry-After"))
    if status in _RETRY_STATUSES:
        return _Outcome(False, True, f"webhook answered HTTP {status}: {answer}", status,
                        retry_after if status == 429 else None)
    if 300 <= status < 400:
        return _Outcome(False, False, f"webhook answered HTTP {status} (a redirect, not "
                        f"followed for a POST): set {WEBHOOK_VARIABLE} to the final URL",
                        status)
    return _Outcome(False, False, f"webhook refused the alert, HTTP {status} (permanent): "
                    f"{answer}", status)


def _telegram_outcome(response: requests.Response) -> _Outcome:
    status = response.status_code
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        text = " ".join(response.text[:200].split())
        return _Outcome(False, status >= 500 or status in _RETRY_STATUSES,
                        f"Telegram answered HTTP {status} without a Bot API body: {text}",
                        status)
    if status == 200 and answer.get("ok") is True:
        return _Outcome(True, False, "", status)
    code = answer.get("error_code", status)
    description = str(answer.get("description", "no description"))
    parameters = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
    if status == 429 or code == 429:
        retry_after = _seconds(parameters.get("retry_after")) or _seconds(
            response.headers.get("Retry-After"))
        return _Outcome(False, True, f"Telegram rate limit (429): {description}", status,
                        retry_after)
    if status >= 500 or status in _RETRY_STATUSES:
        return _Outcome(False, True, f"Telegram answered HTTP {status}: {description}", status)
    return _Outcome(False, False, f"Telegram refused the message, error {code} (permanent): "
                    f"{description}", status)


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def _safe(text: str, secrets: Iterable[str]) -> str:
    return _clip(redact(" ".join(text.split()), extra=secrets), REASON_LIMIT)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------------------- storage
def alert_id(alert: Alert, dedupe_key: str | None = None) -> str:
    """``<YYYYMMDDTHHMMSSZ>-<kind>-<12 hex>``: the hex names ``dedupe_key`` (with the kind)
    when given, so the same event never makes two records, else it is random."""
    stamp = _parse_time(alert.time).strftime("%Y%m%dT%H%M%SZ")
    if dedupe_key is None:
        tail = uuid.uuid4().hex[:12]
    else:
        tail = hashlib.sha256(f"{alert.kind}\n{dedupe_key}".encode()).hexdigest()[:12]
    return f"{stamp}-{alert.kind}-{tail}"


def alert_path(folder: Path, record_id: str) -> Path:
    return folder / f"{record_id}.json"


def write_record(folder: Path, record: AlertRecord) -> Path:
    """Write ``record`` atomically (the project's one atomic write) and return its path."""
    path = alert_path(folder, record.alert_id).absolute()
    write_atomically(pafs.LocalFileSystem(), str(path), record.to_json().encode())
    return path


def read_record(path: Path) -> AlertRecord:
    """The record stored at ``path``; ``ValueError`` naming the file when it is not one."""
    try:
        return AlertRecord.model_validate_json(path.read_bytes())
    except (ValidationError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a valid alert record: {exc}") from None


def read_alerts(folder: Path | None = None) -> list[AlertRecord]:
    """Every readable record in ``folder`` (default ``<data_dir>/alerts``), oldest first; an
    unreadable file is logged and skipped."""
    folder = data_dir() / "alerts" if folder is None else folder
    records = []
    for path in alert_files(folder):
        try:
            records.append(read_record(path))
        except (OSError, ValueError) as exc:
            log.warning("skipping alert file %s: %s", path, exc)
    return records


def alert_files(folder: Path) -> list[Path]:
    """The record files of ``folder`` (named as :func:`alert_id` names them), oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and _FILE.match(p.name))


def alert_time(path: Path) -> datetime:
    """When the alert stored at ``path`` happened, read from its file name (UTC)."""
    return datetime.strptime(path.name[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _find_existing(folder: Path, kind: str, tail: str) -> AlertRecord | None:
    if not folder.is_dir():
        return None
    for path in sorted(folder.glob(f"*-{kind}-{tail}.json")):
        try:
            return read_record(path)
        except (OSError, ValueError):
            continue
    return None


def _parse_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"alert time {value!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise ValueError(f"alert time {value!r} has no time zone (UTC expected)")
    return moment.astimezone(UTC)


# ------------------------------------------------------------------------------- public API
def raise_alert(
    alert: Alert,
    *,
    dedupe_key: str | None = None,
    sender: AlertSender | None = None,
    settings: AlertSettings | None = None,
) -> AlertRecord:
    """Write ``alert`` to ``<data_dir>/alerts/`` and deliver it; return the stored record.

    Args:
        alert: what happened (its texts are redacted on construction).
        dedupe_key: names the event (``"run_failure:<run_id>"``, ``"<market>:2024-05"``): a
            second call with the same kind and key returns the first record unchanged and
            delivers nothing again. None: every call is a new alert.
        sender: the :class:`AlertSender` to deliver with (a sensor keeps one across alerts,
            so a receiver that is down costs one timeout per tick); default: a new one.
        settings: used when ``sender`` is None; default :meth:`AlertSettings.from_env`.

    Returns:
        The record as written after delivery: ``deliveries[channel].status`` is
        ``delivered`` or ``undelivered`` (with ``reason`` and ``retryable``).

    Never raises for a receiver's failure; raises ``OSError`` when the record itself cannot
    be written (the alerts folder is not writable), which a caller should let fail loudly.
    """
    if sender is None:
        sender = AlertSender(settings or AlertSettings.from_env())
    folder = sender.settings.folder
    record_id = alert_id(alert, dedupe_key)
    if dedupe_key is not None:
        existing = _find_existing(folder, alert.kind, record_id.rsplit("-", 1)[1])
        if existing is not None:
            log.info("alert %s already raised (%s); not raised again", existing.alert_id,
                     existing.headline())
            return existing
    record = AlertRecord(**alert.model_dump(), alert_id=record_id, deliveries={
        channel: Delivery(channel=channel) for channel in sender.settings.channels()})  # type: ignore[arg-type]
    path = write_record(folder, record)  # first: an alert outlives a crash mid-delivery
    if record.deliveries:
        record = sender.deliver(record)
        write_record(folder, record)
    _log_outcome(record, path)
    return record


def retry_undelivered(
    *,
    sender: AlertSender | None = None,
    settings: AlertSettings | None = None,
    max_rounds: int = 5,
    max_age_s: float = 86_400.0,
    min_age_s: float = 60.0,
    limit: int = 20,
    now_ms: int | None = None,
) -> list[AlertRecord]:
    """Try the retryable undelivered channels of recent records once more; return the
    records attempted (as written).

    Args:
        max_rounds: delivery rounds per channel, the first included; the round reaching it
            marks the channel not retryable ("gave up after N rounds").
        max_age_s: records older than this are left as they are (seconds).
        min_age_s: a channel attempted less than this long ago is left for later, so a
            record being delivered by its raiser is not delivered twice (seconds).
        limit: at most this many records per call (newest first), bounding a tick.
        now_ms: the current time, UTC epoch ms (tests).
    """
    if sender is None:
        sender = AlertSender(settings or AlertSettings.from_env())
    folder = sender.settings.folder
    now = utc_now_ms() if now_ms is None else now_ms
    attempted: list[AlertRecord] = []
    for path in reversed(alert_files(folder)):
        if len(attempted) >= limit:
            break
        if (now - alert_time(path).timestamp() * 1000) > max_age_s * 1000:
            break  # files are in time order: every further one is older still
        try:
            record = read_record(path)
        except (OSError, ValueError) as exc:
            log.warning("skipping alert file %s: %s", path, exc)
            continue
        due = [channel for channel in record.pending()
               if _due(record, record.deliveries[channel], now, min_age_s)]
        if not due:
            continue
        record = sender.deliver(record, channels=due)
        deliveries = dict(record.deliveries)
        for channel in due:
            delivery = deliveries[channel]
            if delivery.status == UNDELIVERED and delivery.rounds >= max_rounds:
                deliveries[channel] = delivery.model_copy(update={
                    "retryable": False,
                    "reason": f"gave up after {delivery.rounds} rounds: {delivery.reason}"})
        record = record.model_copy(update={"deliveries": deliveries})
        write_record(folder, record)
        _log_outcome(record, path)
        attempted.append(record)
    return attempted


def _due(record: AlertRecord, delivery: Delivery, now_ms: int, min_age_s: float) -> bool:
    if delivery.next_attempt_after is not None and (
            _parse_time(delivery.next_attempt_after).timestamp() * 1000 > now_ms):
        return False
    last = delivery.last_attempt_at or record.time
    return now_ms - _parse_time(last).timestamp() * 1000 >= min_age_s * 1000


def _log_outcome(record: AlertRecord, path: Path) -> None:
    states = ", ".join(f"{c}: {d.status}" + (f" ({d.reason})" if d.reason else "")
                       for c, d in record.deliveries.items()) or "no channel configured"
    level = logging.INFO if record.delivered else logging.WARNING
    log.log(level, "alert %s written to %s; %s", record.alert_id, path, states)


__all__ = [
    "CHAMPION_DEGRADED", "RETRAINING_GAVE_UP", "RUN_FAILURE",
    "Alert", "AlertError", "AlertRecord", "AlertSender", "AlertSettings", "Delivery",
    "FailedStep", "alert_files", "alert_time", "raise_alert", "read_alerts",
    "retry_undelivered", "write_record",
]
