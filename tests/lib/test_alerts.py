"""Alert records and their delivery, against loopback receivers speaking each wire format: a
JSON webhook and Telegram's Bot API (up, down, 5xx then up, 401 permanent, 429 with
retry_after, slow); the bot token never in a record, a log line or a reason; undelivered
records retried later, a bounded number of times."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from tests.fakes.http_receivers import TelegramReceiver, WebhookReceiver, closed_port_url
from tradecore_lib.alerts import (
    DELIVERED,
    RUN_FAILURE,
    TELEGRAM,
    UNDELIVERED,
    WEBHOOK,
    Alert,
    AlertError,
    AlertRecord,
    AlertSender,
    AlertSettings,
    FailedStep,
    alert_files,
    raise_alert,
    read_alerts,
    retry_undelivered,
)

TOKEN = "123456789:AAH-very-secret-bot-token_xyz"
CHAT = "424242"


@pytest.fixture(autouse=True)
def _data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADECORE_DATA_DIR", str(tmp_path / "data"))
    for name in ("TRADECORE_ALERT_WEBHOOK", "TRADECORE_TELEGRAM_BOT_TOKEN",
                 "TRADECORE_TELEGRAM_CHAT_ID", "TRADECORE_TELEGRAM_API_BASE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def webhook():
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def telegram():
    with TelegramReceiver(TOKEN, (CHAT,)) as receiver:
        yield receiver


def fast(**overrides) -> AlertSettings:
    """Settings from the environment with short timeouts and no backoff wait."""
    values = {"timeout_s": 2.0, "attempts": 3, "backoff_s": 0.0, "budget_s": 5.0}
    values.update(overrides)
    return AlertSettings.from_env(**values)


def failure_alert(**overrides) -> Alert:
    values = {
        "kind": RUN_FAILURE, "summary": "run abc failed at synthetic_btc_usd__candles",
        "market": "synthetic_btc_usd", "run_id": "abc", "job": "__ASSET_JOB",
        "step": "synthetic_btc_usd__candles",
        "error": AlertError(class_name="ValueError", message="bad rows in 2024-03"),
        "failed_steps": (FailedStep(step="synthetic_btc_usd__candles",
                                    asset="synthetic_btc_usd/candles",
                                    error=AlertError(class_name="ValueError",
                                                     message="bad rows in 2024-03")),),
    }
    values.update(overrides)
    return Alert(**values)


def stored(record: AlertRecord) -> dict:
    (path,) = [p for p in alert_files(fast().folder) if record.alert_id in p.name]
    return json.loads(path.read_text())


def test_an_alert_is_written_and_posted_as_json_to_the_webhook(webhook, monkeypatch) -> None:
    monkeypatch.setenv("TRADECORE_ALERT_WEBHOOK", webhook.url + "/hooks/tradecore")
    record = raise_alert(failure_alert(), settings=fast())

    assert record.deliveries[WEBHOOK].status == DELIVERED
    assert record.deliveries[WEBHOOK].http_status == 200 and record.delivered
    (payload,) = webhook.payloads()
    assert webhook.requests[0].path == "/hooks/tradecore"
    assert payload == {**record.model_dump(mode="json", exclude={"deliveries"}),
                       "text": record.headline()}
    assert payload["run_id"] == "abc" and payload["market"] == "synthetic_btc_usd"
    assert payload["error"] == {"class_name": "ValueError", "message": "bad rows in 2024-03"}
    assert payload["text"].startswith("[TradeCore] run_failure synthetic_btc_usd: run abc")
    on_disk = stored(record)
    assert on_disk["deliveries"]["webhook"]["status"] == "delivered"
    assert AlertRecord.model_validate(on_disk) == record
    assert read_alerts() == [record]
    # The file name orders records by time and names the kind.
    assert record.alert_id.split("-")[1] == "run_failure"


def test_telegram_gets_send_message_with_chat_id_and_text(telegram, monkeypatch) -> None:
    monkeypatch.setenv("TRADECORE_TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TRADECORE_TELEGRAM_CHAT_ID", CHAT)
    monkeypatch.setenv("TRADECORE_TELEGRAM_API_BASE", telegram.url)
    record = raise_alert(failure_alert(), settings=fast())

    assert record.deliveries[TELEGRAM].status == DELIVERED
    (message,) = telegram.sent
    assert message["chat"]["id"] == int(CHAT)
    assert message["text"] == record.text()
    assert "step synthetic_btc_usd__candles [synthetic_btc_usd/candles]: ValueError: bad rows" \
        in message["text"]
    assert telegram.requests[0].path == f"/bot{TOKEN}/sendMessage"
    assert TOKEN not in json.dumps(stored(record))


def test_a_receiver_that_is_down_leaves_an_undelivered_record_and_raises_nothing(
        monkeypatch) -> None:
    monkeypatch.setenv("TRADECORE_ALERT_WEBHOOK", closed_port_url() + "/hook")
    record = raise_alert(failure_alert(), settings=fast())

    delivery = record.deliveries[WEBHOOK]
    assert delivery.status == UNDELIVERED and delivery.retryable
    assert delivery.attempts == 3 and delivery.rounds == 1
    assert "ConnectionError" in delivery.reason and "(after 3 request(s))" in delivery.reason
    assert stored(record)["deliveries"]["webhook"]["status"] == "undelivered"


def test_5xx_answers_are_retried_until_the_receiver_is_up(webhook, telegram,
                                                          monkeypatch) -> None:
    monkeypatch.setenv("TRADECORE_ALERT_WEBHOOK", webhook.url)
    monkeypatch.setenv("TRADECORE_TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TRADECORE_TELEGRAM_CHAT_ID", CHAT)
    monkeypatch.setenv("TRADECORE_TELEGRAM_API_BASE", telegram.url)
    webhook.inject("http_502", "http_500")
    telegram.inject("http_502", "drop")
    waits: list[float] = []
    sender = AlertSender(fast(backoff_s=0.25), sleep=waits.append)
    record = raise_alert(failure_alert(), sender=sender)

    assert record.deliveries[WEBHOOK].status == DELIVERED
    assert record.deliveries[TELEGRAM].status == DELIVERED
    assert record.deliveries[WEBHOOK].attempts == 3 == record.deliveries[TELEGRAM].attempts
    assert len(webhook.payloads()) == 3 and len(telegram.sent) == 1
    assert waits == [0.25, 0.5, 0.25, 0.5]  # exponential backoff, per channel


def test_a_wrong_token_is_permanent_and_never_shown(telegram, monkeypatch) -> None:
    wrong = "987654321:AAwrong-token-that-must-not-leak"
    monkeypatch.setenv("TRADECORE_TELEGRAM_BOT_TOKEN", wrong)
    monkeypatch.setenv("TRADECORE_TELEGRAM_CHAT_ID", CHAT)
    monkeypatch.setenv("TRADECORE_TELEGRAM_API_BASE", telegram.url)
    record = raise_alert(failure_alert(), settings=fast())

    delivery = record.deliveries[TELEGRAM]
    assert delivery.status == UNDELIVERED and not delivery.retryable
    assert delivery.attempts == 1 and delivery.http_status == 401
    assert "error 401 (permanent): Unauthorized" in delivery.reason
    assert wrong not in json.dumps(stored(record))
    # Not retried by a later tick either.
    assert retry_undelivered(settings=fast(), min_age_s=0) == []
    assert len(telegram.requests) == 1


def test_an_unknown_chat_and_a_4xx_webhook_are_permanent(telegram, webhook,
                                                         monkeypatch) -> None:
    monkeypatch.setenv("TRADECORE_TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TRADECORE_TELEGRAM_CHAT_ID", "-1000001")
    monkeypatch.setenv("TRADECORE_TELEGRAM_API_BASE", telegram.url)
    monkeypatch.setenv("TRADECORE_ALERT_WEBHOOK", webhook.url)
    webhook.inject("http_400")
    record = raise_alert(failure_alert(), settings=fast())

    assert "chat not found" in record.deliveries[TELEGRAM].reason
    assert "HTTP 400 (permanent)" in record.deliveries[WEBHOOK].reason
    assert not record.deliveries[TELEGRAM].retryable and not record.deliveries[WEBHOOK].retryable
    assert len(telegram.requests) == 1 and len(webhook.requests) == 1


def test_429_waits_what_retry_after_says_or_defers_past_the_budget(telegram,
                                                                   monkeypatch) -> None:
    monkeypatch.setenv("TRADECORE_TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TRADECORE_TELEGRAM_CHAT_ID", CHAT)
    monkeypatch.setenv("TRADECORE_TELEGRAM_API_BASE", telegram.url)
    telegram.retry_after = 3
    telegram.inject("http_429")
    waits: list[float] = []
    record = raise_alert(failure_alert(), sender=AlertSender(fast(), sleep=waits.append))
    assert waits == [3.0] and record.deliveries[TELEGRAM].status == DELIVERED

    telegram.retry_after = 120  # longer than a tick may wait: recorded, retried later
    telegram.inject("http_429")
    waits.clear()
    record = raise_alert(failure_alert(), sender=AlertSender(fast(), sleep=waits.append))
    delivery = record.deliveries[TELEGRAM]
    assert waits == [] and delivery.status == UNDELIVERED and delivery.retryable
    assert delivery.attempts == 1 and "retry after 120" in delivery.reason
    assert delivery.next_attempt_after is not None
    # A later tick before retry_after has passed leaves it alone.
    assert retry_undelivered(settings=fast(), min_age_s=0) == []


def test_a_slow_receiver_does_not_hold_the_caller_past_its_budget(monkeypatch) -> None:
    with WebhookReceiver(slow_seconds=20.0) as slow:
        monkeypatch.setenv("TRADECORE_ALERT_WEBHOOK", slow.url)
        slow.inject("slow", "slow", "slow")
        started = time.monotonic()
        record = raise_alert(failure_alert(),
                             settings=fast(timeout_s=0.3, attempts=3, budget_s=0.8))
        elapsed = time.monotonic() - started
    delivery = record.deliveries[WEBHOOK]
    assert delivery.status == UNDELIVERED and delivery.retryable
    assert "Timeout" in delivery.reason
    assert 1 <= delivery.attempts <= 3
    assert elapsed < 10.0  # bounded by the budget, not by the receiver's 20 s


def test_the_token_is_in_no_log_record_or_reason(caplog, telegram, monkeypatch) -> None:
    caplog.set_level(logging.DEBUG)  # urllib3 logs each request line at DEBUG
    # Whatever ran before may have silenced urllib3: importing runpod sets its level to
    # WARNING, a logging.config.dictConfig (disable_existing_loggers) disables it. This test
    # is about what urllib3 would write.
    for name in ("urllib3", "urllib3.connectionpool"):
        caplog.set_level(logging.DEBUG, logger=name)
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    monkeypatch.setenv("TRADECORE_TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TRADECORE_TELEGRAM_CHAT_ID", CHAT)
    monkeypatch.setenv("TRADECORE_TELEGRAM_API_BASE", telegram.url)
    delivered = raise_alert(failure_alert(summary=f"token {TOKEN} pasted by mistake"),
                            settings=fast())
    assert delivered.deliveries[TELEGRAM].status == DELIVERED
    assert "sendMessage" in caplog.text  # urllib3 did log the request line ...
    assert TOKEN not in caplog.text  # ... with the token masked

    monkeypatch.setenv("TRADECORE_TELEGRAM_API_BASE", closed_port_url())
    down = raise_alert(failure_alert(), settings=fast(attempts=1))
    reason = down.deliveries[TELEGRAM].reason
    assert "ConnectionError" in reason and "/bot***/sendMessage" in reason

    # Settings built in code (the token not in the environment) are masked as well.
    monkeypatch.delenv("TRADECORE_TELEGRAM_BOT_TOKEN")
    in_code = "555:AAin-code-token-never-in-the-environment"
    settings = fast(attempts=1, telegram_token=in_code, telegram_api_base=telegram.url)
    assert in_code not in repr(settings)
    caplog.clear()
    other = raise_alert(failure_alert(), settings=settings)  # a 401: urllib3 logs its path
    assert other.deliveries[TELEGRAM].http_status == 401
    assert "/bot***/sendMessage" in caplog.text
    assert in_code not in other.deliveries[TELEGRAM].reason
    assert in_code not in caplog.text
    for path in alert_files(fast().folder):
        text = path.read_text()
        assert TOKEN not in text and in_code not in text
    assert "token *** pasted" in delivered.summary


def test_an_alert_redacts_secrets_of_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("RUNPOD_API_KEY", "rp-key-0123456789")
    alert = failure_alert(
        summary="pod start failed with rp-key-0123456789",
        error=AlertError(class_name="HTTPError",
                         message="401 for https://user:pw1234@api.example/x?api_key=zzzz"),
        details={"url": "https://user:pw1234@h/", "bars": 3})
    record = raise_alert(alert, settings=fast())
    text = json.dumps(stored(record))
    assert "rp-key-0123456789" not in text and "pw1234" not in text and "zzzz" not in text
    assert record.deliveries == {} and record.details["bars"] == 3


def test_the_same_event_raised_twice_makes_one_record_and_one_delivery(webhook,
                                                                       monkeypatch) -> None:
    monkeypatch.setenv("TRADECORE_ALERT_WEBHOOK", webhook.url)
    first = raise_alert(failure_alert(), dedupe_key="run_failure:abc", settings=fast())
    again = raise_alert(failure_alert(time="2030-01-01T00:00:00.000Z"),
                        dedupe_key="run_failure:abc", settings=fast())
    assert again == first
    assert len(alert_files(fast().folder)) == 1 and len(webhook.payloads()) == 1
    other = raise_alert(failure_alert(), dedupe_key="run_failure:def", settings=fast())
    assert other.alert_id != first.alert_id and len(webhook.payloads()) == 2


def test_one_sender_waits_for_a_dead_receiver_once_per_pause(monkeypatch) -> None:
    monkeypatch.setenv("TRADECORE_ALERT_WEBHOOK", closed_port_url())
    sender = AlertSender(fast(attempts=2))
    first = raise_alert(failure_alert(), sender=sender)
    second = raise_alert(failure_alert(run_id="def"), sender=sender)
    assert first.deliveries[WEBHOOK].attempts == 2
    assert second.deliveries[WEBHOOK].attempts == 0 and second.deliveries[WEBHOOK].retryable
    assert second.deliveries[WEBHOOK].reason.startswith("not attempted: webhook failed")


def test_undelivered_records_are_retried_later_a_bounded_number_of_times(webhook,
                                                                         monkeypatch) -> None:
    monkeypatch.setenv("TRADECORE_ALERT_WEBHOOK", webhook.url)
    webhook.inject("http_502")
    record = raise_alert(failure_alert(), settings=fast(attempts=1))
    assert record.deliveries[WEBHOOK].status == UNDELIVERED
    now = int(time.time() * 1000)

    # Too soon after the raiser's attempt: left alone (the raiser may still be at it).
    assert retry_undelivered(settings=fast(attempts=1), now_ms=now) == []
    (retried,) = retry_undelivered(settings=fast(attempts=1), now_ms=now + 120_000)
    assert retried.deliveries[WEBHOOK].status == DELIVERED
    assert retried.deliveries[WEBHOOK].rounds == 2
    assert stored(retried)["deliveries"]["webhook"]["status"] == "delivered"
    assert retry_undelivered(settings=fast(attempts=1), now_ms=now + 240_000) == []

    # A receiver failing every round: given up after max_rounds, then never tried again.
    webhook.inject(*["http_502"] * 10)
    failing = raise_alert(failure_alert(run_id="def"), settings=fast(attempts=1))
    later = now
    for _ in range(4):
        later += 120_000
        retry_undelivered(settings=fast(attempts=1), max_rounds=3, now_ms=later)
    final = next(r for r in read_alerts() if r.alert_id == failing.alert_id)
    delivery = final.deliveries[WEBHOOK]
    assert delivery.rounds == 3 and not delivery.retryable
    assert delivery.reason.startswith("gave up after 3 rounds: webhook answered HTTP 502")
    # Records older than max_age_s are left as they are.
    webhook.inject("http_502")
    raise_alert(failure_alert(run_id="old", time="2020-01-01T00:00:00.000Z"),
                settings=fast(attempts=1))
    assert retry_undelivered(settings=fast(), max_age_s=3600, now_ms=later + 120_000) == []


def test_a_half_configured_telegram_is_recorded_with_what_is_missing(monkeypatch) -> None:
    monkeypatch.setenv("TRADECORE_TELEGRAM_BOT_TOKEN", TOKEN)
    record = raise_alert(failure_alert(), settings=fast())
    delivery = record.deliveries[TELEGRAM]
    assert delivery.status == UNDELIVERED and not delivery.retryable
    assert delivery.attempts == 0
    assert "TRADECORE_TELEGRAM_CHAT_ID unset" in delivery.reason


def test_alerts_refuse_what_they_cannot_store(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lower_snake_case"):
        Alert(kind="Run Failure", summary="x")
    with pytest.raises(ValueError, match="no time zone"):
        Alert(kind=RUN_FAILURE, summary="x", time="2024-01-01T00:00:00")
    with pytest.raises(ValueError, match="attempts >= 1"):
        AlertSettings(folder=tmp_path, attempts=0)
    long = failure_alert(details={f"k{i}": "v" * 100 for i in range(60)})
    record = raise_alert(long, settings=fast())
    assert len(record.text()) <= 4096
