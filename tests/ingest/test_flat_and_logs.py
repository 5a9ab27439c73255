"""Flat JSON spans (one per message) and OTLP log evaluation events."""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from ingest.config import IngestConfig
from ingest.decode import DeadLetter, Decoded, Decoder, SourceMessage
from ingest.normalise import evaluation_score
from ingest.span import EvalScore, TraceContext

DECODER = Decoder(IngestConfig(), logs_topics=["otlp_logs"])
TRACE_ID, SPAN_ID = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"


def _decode(value: bytes, topic: str = "otlp_spans") -> Decoded | DeadLetter:
    return DECODER.decode(SourceMessage(topic=topic, partition=0, offset=0, key=None,
                                        value=value))


def test_flat_json_span_is_normalised() -> None:
    doc = {
        "trace_id": TRACE_ID, "span_id": SPAN_ID, "name": "chat claude-3-5-haiku",
        "start_time": "2026-11-27T10:00:00Z", "end_time": "2026-11-27T10:00:02.5Z",
        "status_code": "ERROR", "status_message": "overloaded_error",
        "attributes": {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
                       "gen_ai.request.model": "claude-3-5-haiku-20241022",
                       "gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100,
                       "gen_ai.response.finish_reasons": ["end_turn"],
                       "session.id": "s-1", "input.value": "secret text"},
        "resource": {"service.name": "mail-helper"},
    }
    result = _decode(json.dumps(doc).encode())
    assert isinstance(result, Decoded)
    (span,) = result.spans
    assert (span.provider, span.request_model, span.finish_reasons) == (
        "anthropic", "claude-3-5-haiku-20241022", ("stop",))
    assert (span.is_error, span.error_kind) == (True, "overloaded")
    assert span.duration_s == 2.5
    assert span.context == TraceContext(service="mail-helper", session_id="s-1")
    assert span.cost_usd == (1000 * 0.8 + 100 * 4.0) / 1e6
    assert "secret text" not in repr(result)


def test_flat_span_without_time_zone_is_rejected_with_the_field() -> None:
    doc = {"trace_id": TRACE_ID, "span_id": SPAN_ID, "start_time": "2026-11-27T10:00:00",
           "end_time": "2026-11-27T10:00:01Z"}
    result = _decode(json.dumps(doc).encode())
    assert isinstance(result, DeadLetter)
    assert result.reason == ("malformed JSON message: start_time: '2026-11-27T10:00:00' has no "
                             "time zone")


def _kv(key: str, value: AnyValue) -> KeyValue:
    return KeyValue(key=key, value=value)


def test_evaluation_log_event_becomes_an_eval_result() -> None:
    record = LogRecord(
        time_unix_nano=1_800_000_000_000_000_000, event_name="gen_ai.evaluation.result",
        trace_id=bytes.fromhex(TRACE_ID), span_id=bytes.fromhex(SPAN_ID),
        attributes=[_kv("gen_ai.evaluation.name", AnyValue(string_value="groundedness")),
                    _kv("gen_ai.evaluation.score.value", AnyValue(double_value=0.62)),
                    _kv("gen_ai.evaluation.score.label", AnyValue(string_value="Fail")),
                    _kv("gen_ai.evaluation.explanation", AnyValue(string_value="quotes user"))])
    other = LogRecord(time_unix_nano=1, body=AnyValue(string_value="app log line"))
    request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=Resource(attributes=[_kv("service.name", AnyValue(string_value="rag-api"))]),
        scope_logs=[ScopeLogs(log_records=[record, other])])])
    result = _decode(request.SerializeToString(), topic="otlp_logs")
    assert isinstance(result, Decoded)
    (evaluation,) = result.evals
    assert (evaluation.trace_id, evaluation.span_id) == (TRACE_ID, SPAN_ID)
    assert evaluation.score == EvalScore("groundedness", 0.62, "fail")
    assert evaluation.context.service == "rag-api"
    assert "quotes user" not in repr(result)


def test_evaluation_span_later_in_the_trace_gives_eval_results() -> None:
    doc = {"trace_id": TRACE_ID, "span_id": "00000000000000aa", "parent_span_id": SPAN_ID,
           "name": "evaluation", "start_time_unix_nano": 1, "end_time_unix_nano": 2,
           "attributes": {"eval.quality": 0.8, "eval.safety.passed": False,
                          "eval.format.label": "pass"}}
    result = _decode(json.dumps(doc).encode())
    assert isinstance(result, Decoded) and result.spans == ()
    assert {e.score for e in result.evals} == {
        EvalScore("quality", 0.8, None), EvalScore("safety", None, "fail"),
        EvalScore("format", None, "pass")}


def test_evaluation_score_from_the_three_attribute_values() -> None:
    assert evaluation_score("relevance", "0.5", " PASS ") == EvalScore("relevance", 0.5, " pass ")
    assert evaluation_score("relevance", "high", "") == EvalScore("relevance", None, None)
    assert evaluation_score(7, True, ["x"]) == EvalScore("7", None, None)  # a bool is no score
    assert evaluation_score("", 0.9, "pass") is None
    assert evaluation_score(["relevance"], 0.9, None) is None  # a list is no name
    score = evaluation_score("relevance", 1, None)
    assert type(score) is EvalScore and type(score.score) is float
    with pytest.raises(AttributeError):
        score.name = "other"  # type: ignore[misc]
