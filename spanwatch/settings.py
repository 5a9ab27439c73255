"""Runtime settings from the environment (prefix `SPANWATCH_`, nested with `__`) or a `.env` file.

Secrets are `SecretStr`: their values never appear in logs, reprs or exceptions.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ingest.config import IngestConfig
from metrics.windows import WindowConfig
from notify.config import NotifySettings


class KafkaSettings(BaseModel):
    """Where the spans come from and where bad messages go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bootstrap_servers: str = Field(default="127.0.0.1:9092",
                                   description="Comma-separated host:port list.")
    spans_topic: str = Field(default="otlp_spans",
                             description="Topic of the OTel Collector kafka exporter's traces.")
    logs_topic: str | None = Field(
        default=None, description="Optional topic of OTLP logs carrying evaluation events "
                                  "(the collector's default is `otlp_logs`).")
    dead_letter_topic: str = Field(default="spanwatch_dlq",
                                   description="Undecodable messages go here, reason in headers.")
    encoding: Literal["auto", "otlp_proto", "otlp_json", "flat_json"] = Field(
        default="auto", description="Message encoding; auto tells JSON from protobuf per message.")
    start_from: Literal["beginning", "end"] = Field(
        default="end", description="Where to start on a fresh run without recovery state.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: SecretStr | None = None
    batch_size: int = Field(default=1000, gt=0, description="Messages per consumer poll.")
    fetch_wait_max_ms: int | None = Field(
        default=None, gt=0,
        description="librdkafka fetch.wait.max.ms; set ~10 for the embedded tansu broker.")

    def client_config(self) -> dict[str, str]:
        """librdkafka settings shared by consumer, producer and admin clients."""
        config = {"bootstrap.servers": self.bootstrap_servers,
                  "security.protocol": self.security_protocol}
        optional = {
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password.get_secret_value() if self.sasl_password else None,
            "ssl.ca.location": self.ssl_ca_location,
            "ssl.certificate.location": self.ssl_certificate_location,
            "ssl.key.location": self.ssl_key_location,
            "ssl.key.password": self.ssl_key_password.get_secret_value()
            if self.ssl_key_password else None,
        }
        config.update({k: str(v) for k, v in optional.items() if v is not None})
        return config

    def consumer_config(self) -> dict[str, str]:
        """Extra consumer settings for Bytewax's KafkaSource (it sets bootstrap itself)."""
        config = {k: v for k, v in self.client_config().items() if k != "bootstrap.servers"}
        if self.fetch_wait_max_ms is not None:
            config["fetch.wait.max.ms"] = str(self.fetch_wait_max_ms)
        return config


class RecoverySettings(BaseModel):
    """Bytewax recovery for `spanwatch run`: every `snapshot_interval` the flow's state (Kafka
    offsets, open traces, window buckets, detector baselines, alert states, grouping) is
    written to SQLite partitions in `directory`. A restart resumes from the last complete
    snapshot and re-reads at most one `snapshot_interval` of input; what it sends again is
    ignored by the outbox (same dedup key and sequence). Off while `directory` is unset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    directory: Path | None = Field(
        default=None, description="Recovery partitions; created (with `partitions` files) when "
                                  "empty. Keep it on a volume that survives restarts.")
    snapshot_interval: timedelta = Field(
        default=timedelta(seconds=10), gt=timedelta(0),
        description="Bytewax epoch length: how often state is snapshotted, and so the most "
                    "input a restart re-reads.")
    backup_interval: timedelta = Field(
        default=timedelta(0), ge=timedelta(0),
        description="Keep superseded snapshots this long (set it to your backup period when "
                    "copying the directory elsewhere).")
    partitions: int = Field(
        default=1, gt=0, description="Partitions to create in an empty directory (at least "
                                     "the cluster's process count is a good choice).")


class Settings(BaseSettings):
    """All of spanwatch's runtime configuration."""

    model_config = SettingsConfigDict(
        env_prefix="SPANWATCH_", env_nested_delimiter="__", env_file=".env",
        env_file_encoding="utf-8", extra="ignore", frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    silences_file: Path = Field(default=Path("silences.json"),
                                description="Silences managed with `spanwatch silence`.")
    rules_file: Path = Field(default=Path("alerts.toml"), description="The alert rules.")
    allowed_lateness: timedelta = Field(
        default=timedelta(seconds=60), ge=timedelta(0),
        description="How long after the watermark a minute stays open for late spans.")
    idle_partition_timeout: timedelta = Field(
        default=timedelta(seconds=30), gt=timedelta(0),
        description="A source partition without progress this long (wall time) no longer "
                    "holds the watermark back.")
    series_retire_after: timedelta = Field(
        default=timedelta(hours=6), gt=timedelta(minutes=1),
        description="A series without records this long (event time) stops emitting empty "
                    "minutes and its windows are dropped, so state stays bounded. Until then a "
                    "silent series reports zero traffic (rules with on_missing_data alert).")
    session_idle_timeout: timedelta = Field(
        default=timedelta(minutes=30), ge=timedelta(minutes=1),
        description="A session without calls this long is closed (cost per session).")
    output_file: Path | None = Field(
        default=None, description="Also append findings as JSON lines to this file.")
    recovery: RecoverySettings = Field(default_factory=RecoverySettings)
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one JSON object per log line (for log shippers).")
    http_host: str = Field(default="0.0.0.0",  # noqa: S104 - scraped from other containers
                           description="Interface of the /metrics, /healthz, /readyz server.")
    http_port: int | None = Field(
        default=9464, ge=0, le=65535,
        description="Port of the self-metrics and health server; 0 picks a free one, "
                    "unset (empty) turns it off.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def window_config(self) -> WindowConfig:
        """Series window timeouts from the settings (sizes stay at their defaults)."""
        return WindowConfig(retire_after=self.series_retire_after,
                            session_idle_timeout=self.session_idle_timeout)

    @model_validator(mode="after")
    def _windows_are_consistent(self) -> Settings:
        self.window_config()  # raises naming the field (retire_after > session_idle_timeout)
        return self
