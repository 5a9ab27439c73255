"""Error kinds parsed from status descriptions, exception events and error.type."""

from __future__ import annotations

import pytest

from ingest.errors import classify_error, normalise_error_type
from ingest.raw import STATUS_ERROR, STATUS_OK, Attributes, RawEvent, RawSpan


def _span(status: int = STATUS_ERROR, message: str = "", attrs: Attributes | None = None,
          exception: tuple[str, str] | None = None) -> RawSpan:
    events = []
    if exception:
        events.append(RawEvent("exception", 1, {"exception.type": exception[0],
                                                "exception.message": exception[1]}))
    return RawSpan(trace_id="0" * 32, span_id="1" * 16, parent_span_id=None, name="chat",
                   kind=3, start_unix_ns=0, end_unix_ns=1, status_code=status,
                   status_message=message, attributes=attrs or {}, resource={}, events=events)


@pytest.mark.parametrize(("span", "kind", "status"), [
    (_span(message="Error code: 429 - {'error': {'code': 'rate_limit_exceeded'}}"),
     "rate_limit", 429),
    (_span(message="Error code: 400 - {'error': {'message': \"This model's maximum context "
                   "length is 128000 tokens\", 'code': 'context_length_exceeded'}}"),
     "context_length_exceeded", 400),
    (_span(exception=("openai.APITimeoutError", "Request timed out.")), "timeout", None),
    (_span(exception=("openai.APIConnectionError", "Connection error.")), "connection", None),
    (_span(exception=("anthropic.InternalServerError", "Error code: 529 - overloaded_error")),
     "overloaded", 529),
    (_span(attrs={"error.type": "500"}), "server_error", 500),
    (_span(attrs={"http.response.status_code": 401}, message="bad key"), "auth", 401),
    (_span(message="something odd"), "other", None),
])
def test_error_kind(span: RawSpan, kind: str, status: int | None) -> None:
    info = classify_error(span)
    assert (info.is_error, info.kind, info.http_status) == (True, kind, status)


def test_ok_span_without_error_type_is_no_error() -> None:
    assert classify_error(_span(status=STATUS_OK)).is_error is False


def test_error_type_attribute_alone_marks_an_error() -> None:
    info = classify_error(_span(status=STATUS_OK,
                                attrs={"error.type": "<class 'openai.RateLimitError'>"}))
    assert (info.is_error, info.kind, info.error_type) == (
        True, "rate_limit", "openai.RateLimitError")


@pytest.mark.parametrize(("raw", "normalised"), [
    ("<class 'openai.RateLimitError'>", "openai.RateLimitError"),
    ("openai.RateLimitError", "openai.RateLimitError"),
    ("", None), (None, None),
])
def test_error_type_normalisation(raw: str | None, normalised: str | None) -> None:
    assert normalise_error_type(raw) == normalised
