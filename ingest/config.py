"""Configuration of the ingest stage: which attributes carry what, privacy, pricing, assembly.

Plain pydantic models; `spanwatch.settings` nests them under `SPANWATCH_INGEST__*`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr


def _keys(*names: str) -> list[str]:
    return list(names)


class AttributeKeys(BaseModel):
    """Attribute names tried in order, on the span first and then on its resource.

    Defaults cover the reference guide's own names and each instrumentation dialect in use
    (OTel GenAI conventions, OpenLLMetry/Traceloop association properties, OpenInference).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    service: list[str] = Field(default_factory=lambda: _keys("service.name"))
    environment: list[str] = Field(default_factory=lambda: _keys(
        "deployment.environment.name", "deployment.environment"))
    app_version: list[str] = Field(default_factory=lambda: _keys(
        "app.version", "traceloop.association.properties.app_version", "service.version"))
    prompt_template_version: list[str] = Field(default_factory=lambda: _keys(
        "app.prompt_template_version", "gen_ai.prompt.template.version",
        "llm.prompt_template.version", "traceloop.association.properties.prompt_template_version",
        "traceloop.prompt.version"))
    model_version: list[str] = Field(default_factory=lambda: _keys(
        "app.model_version", "traceloop.association.properties.model_version"))
    session_id: list[str] = Field(default_factory=lambda: _keys(
        "session.id", "gen_ai.conversation.id", "traceloop.association.properties.session_id",
        "app.session_id"))
    user_id: list[str] = Field(default_factory=lambda: _keys(
        "user.id", "enduser.id", "traceloop.association.properties.user_id", "app.user_id"))
    user_segment: list[str] = Field(default_factory=lambda: _keys(
        "app.user_segment", "user.segment", "traceloop.association.properties.user_segment"))
    endpoint: list[str] = Field(default_factory=lambda: _keys(
        "app.endpoint", "http.route", "url.path", "traceloop.association.properties.endpoint"))
    cost_usd: list[str] = Field(default_factory=lambda: _keys(
        "gen_ai.usage.cost", "llm.cost.total", "gen_ai.usage.cost_usd", "app.cost_usd"))
    cache_hit: list[str] = Field(default_factory=lambda: _keys(
        "gen_ai.cache.hit", "app.cache_hit", "cache.hit", "llm.cache_hit"))
    feedback: list[str] = Field(default_factory=lambda: _keys(
        "app.user_feedback", "user.feedback", "gen_ai.user.feedback"))
    regenerated: list[str] = Field(default_factory=lambda: _keys(
        "app.regenerated", "gen_ai.request.regenerated", "app.is_retry"))
    refusal: list[str] = Field(default_factory=lambda: _keys(
        "gen_ai.response.refusal", "app.refusal", "llm.refusal"))


class IngestConfig(BaseModel):
    """How messages become `LLMSpan`s."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attributes: AttributeKeys = Field(default_factory=AttributeKeys)
    hash_user_ids: bool = Field(
        default=False, description="Replace user ids by a keyed hash before anything keeps them.")
    user_id_salt: SecretStr = Field(
        default=SecretStr("spanwatch"), description="Key of the user-id hash; set your own.")
    pricing_file: Path | None = Field(
        default=None, description="TOML price table merged over the shipped one.")
    assembly_wait_s: float = Field(
        default=30.0, gt=0, description="How long an LLM span waits for its trace's root span.")
    assembly_max_traces: int = Field(
        default=200_000, gt=0, description="Open traces held at once; the oldest is flushed first.")
    eval_context_traces: int = Field(
        default=200_000, gt=0,
        description="Finished traces remembered to label evaluations that arrive later.")
