"""The one redaction layer: URL credentials, secret variables, exception chains, log records."""

from __future__ import annotations

import logging

import pytest

from tradecore_lib.redaction import (
    RedactingFilter,
    redact,
    redact_url,
    redacted_cause,
    secret_values,
)


@pytest.fixture(autouse=True)
def secrets(monkeypatch):
    monkeypatch.setenv("TRADECORE_KRAKEN_SPOT_URL", "http://user:secretpass@127.0.0.1:9/root")
    monkeypatch.setenv("RUNPOD_API_KEY", "rp_live_key_42")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws/secret+key")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://ml:mlpass@mlflow.example:5000")
    monkeypatch.setenv("TRADECORE_TELEGRAM_BOT_TOKEN", "123456:telegram-token")
    monkeypatch.setenv("TRADECORE_ALERT_WEBHOOK", "https://hooks.example/services/T0/B0/hooksecret")
    monkeypatch.setenv("TRADECORE_OTHER_API_KEY", "other-api-key")


@pytest.mark.parametrize(
    "text",
    [
        "404 Client Error: Not Found for url: http://user:secretpass@127.0.0.1:9/root/0/public",
        "kraken GET http://user:secretpass@127.0.0.1:9/x 404 Not Found",
        "password alone: secretpass, percent-encoded user%3Asecretpass",
        "runpod said rp_live_key_42 is wrong; aws/secret+key too",
        "POST https://api.telegram.org/bot123456:telegram-token/sendMessage",
        "webhook https://hooks.example/services/T0/B0/hooksecret failed",
        "mlflow at https://ml:mlpass@mlflow.example:5000 and mlpass",
        "other-api-key leaked",
    ],
)
def test_every_known_secret_is_masked(text):
    redacted = redact(text)
    for secret in ("secretpass", "rp_live_key_42", "aws/secret+key", "telegram-token",
                   "hooksecret", "mlpass", "other-api-key"):
        assert secret not in redacted
    assert "***" in redacted


def test_urls_keep_what_is_not_secret():
    assert redact_url("https://u:p@host:5000/path?token=abc&x=1") == (
        "https://***@host:5000/path?token=***&x=1"
    )
    assert redact_url("sqlite:///data/mlflow/mlflow.db") == "sqlite:///data/mlflow/mlflow.db"
    assert redact_url("http://127.0.0.1:9") == "http://127.0.0.1:9"
    # An unknown credential in a URL is masked by its position alone.
    assert redact("see ftp://anon:hunter22@files.example/x") == "see ftp://***@files.example/x"


def test_short_values_are_not_masked_everywhere(monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", "ab")
    assert "ab" not in secret_values()
    assert redact("tab") == "tab"


def test_cause_summary_covers_the_chain_redacted():
    try:
        try:
            raise ValueError("for url: http://user:secretpass@127.0.0.1:9/root")
        except ValueError as inner:
            raise RuntimeError("ccxt said rp_live_key_42") from inner
    except RuntimeError as exc:
        summary = redacted_cause(exc)
    assert summary == "RuntimeError: ccxt said *** <- ValueError: for url: http://***@127.0.0.1:9/root"
    assert len(redacted_cause(ValueError("x" * 2000), limit=100)) == 100


def test_logging_filter_redacts_message_args_and_traceback():
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(self.format(record))

    logger = logging.getLogger("tradecore.test_redaction")
    handler = Collect()
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        try:
            raise OSError("http://user:secretpass@127.0.0.1:9 refused")
        except OSError:
            logger.exception("calling %s", "http://user:secretpass@127.0.0.1:9/x")
    finally:
        logger.removeHandler(handler)
    assert records and all("secretpass" not in r for r in records)
    assert "OSError: http://***@127.0.0.1:9 refused" in records[0]
