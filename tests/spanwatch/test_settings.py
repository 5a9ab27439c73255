"""Settings come from SPANWATCH_* variables; secrets never show in reprs or dumps."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from spanwatch.settings import Settings


def test_nested_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANWATCH_KAFKA__BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("SPANWATCH_KAFKA__LOGS_TOPIC", "otlp_logs")
    monkeypatch.setenv("SPANWATCH_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("SPANWATCH_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SPANWATCH_KAFKA__SASL_USERNAME", "spanwatch")
    monkeypatch.setenv("SPANWATCH_KAFKA__SASL_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("SPANWATCH_INGEST__ATTRIBUTES__SESSION_ID", '["my.session"]')
    monkeypatch.setenv("SPANWATCH_INGEST__HASH_USER_IDS", "true")
    settings = Settings()
    assert settings.kafka.logs_topic == "otlp_logs"
    assert settings.ingest.attributes.session_id == ["my.session"]
    assert settings.ingest.hash_user_ids is True
    config = settings.kafka.client_config()
    assert config["bootstrap.servers"] == "k1:9092,k2:9092"
    assert config["sasl.password"] == "hunter2-secret"  # handed to librdkafka only
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())


def test_typo_in_an_enum_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANWATCH_KAFKA__ENCODING", "otlp_protobuf")
    with pytest.raises(ValueError, match=r"kafka\.encoding"):
        Settings()


def test_series_retirement_and_session_timeout_reach_the_windows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANWATCH_SERIES_RETIRE_AFTER", "PT2H")
    monkeypatch.setenv("SPANWATCH_SESSION_IDLE_TIMEOUT", "PT10M")
    config = Settings().window_config()
    assert (config.retire_after, config.session_idle_timeout) == (
        timedelta(hours=2), timedelta(minutes=10))


def test_retiring_series_before_their_sessions_end_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPANWATCH_SERIES_RETIRE_AFTER", "PT20M")
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "WindowConfig.retire_after = datetime.timedelta(seconds=1200) is out of range; " \
           "expected > session_idle_timeout" in str(caught.value)
