"""Settings come from SPANWATCH_* variables; secrets never show in reprs or dumps."""

from __future__ import annotations

import pytest

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
