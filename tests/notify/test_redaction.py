"""Secrets are masked in error texts and in the vendor clients' log records."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from notify.redaction import MASK, Redactor, redacting_logger

WEBHOOK = "https://hooks.slack.com/services/T0000/B0000/abcdefSECRET123"


def test_raw_url_encoded_and_path_forms_are_masked() -> None:
    redact = Redactor([SecretStr(WEBHOOK), "xoxb-token-1234", None])
    assert redact(f"POST {WEBHOOK} failed") == f"POST {MASK} failed"
    assert redact("https%3A%2F%2Fhooks.slack.com%2Fservices%2FT0000%2FB0000%2FabcdefSECRET123"
                  ) == MASK
    assert redact("404 for /services/T0000/B0000/abcdefSECRET123") == f"404 for {MASK}"
    assert redact("token abcdefSECRET123 leaked") == f"token {MASK} leaked"
    assert redact("Bearer xoxb-token-1234") == f"Bearer {MASK}"
    assert redact("services and T0000 are not secret") == "services and T0000 are not secret"


def test_tiny_values_are_not_treated_as_secrets() -> None:
    assert Redactor(["ab"])("abc") == "abc"


def test_log_records_are_masked_including_exception_text(
        caplog: pytest.LogCaptureFixture) -> None:
    logger = redacting_logger("notify.test.redaction", Redactor(["sekret-value-1"]))
    caplog.set_level(logging.DEBUG)
    logger.debug("url: %s", "http://x/sekret-value-1")
    try:
        raise OSError("cannot reach http://x/sekret-value-1")
    except OSError:
        logger.exception("failed")
    assert "sekret-value-1" not in caplog.text
    assert "url: http://x/[redacted]" in caplog.text
    assert "failed (OSError: cannot reach http://x/[redacted])" in caplog.text


def test_a_second_notifier_on_the_same_logger_adds_its_secrets(
        caplog: pytest.LogCaptureFixture) -> None:
    logger = redacting_logger("notify.test.shared", Redactor(["first-secret"]))
    redacting_logger("notify.test.shared", Redactor(["second-secret"]))
    caplog.set_level(logging.DEBUG)
    logger.warning("first-secret and second-secret")
    assert caplog.messages == [f"{MASK} and {MASK}"]
