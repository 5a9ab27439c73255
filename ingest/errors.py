"""Error spans -> a normalised error kind, the exception type and the HTTP status.

Instrumentations put the useful part (HTTP status, provider code such as `rate_limit_exceeded`)
only in the status description or the `exception` event's message, so we parse those. One
release of the OTel OpenAI instrumentation writes `error.type` as `"<class 'openai.X'>"`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ingest.raw import STATUS_ERROR, AttrValue, RawSpan

# Provider error codes as they appear in error bodies (OpenAI, Anthropic, Google, Azure).
_CODE_KINDS = (
    ("context_length_exceeded", "context_length_exceeded"),
    ("string_above_max_length", "context_length_exceeded"),
    ("maximum context length", "context_length_exceeded"),
    ("prompt is too long", "context_length_exceeded"),
    ("insufficient_quota", "quota_exceeded"),
    ("resource_exhausted", "rate_limit"),
    ("rate_limit", "rate_limit"),
    ("rate limit", "rate_limit"),
    ("overloaded_error", "overloaded"),
    ("content_filter", "content_filter"),
    ("content_policy_violation", "content_filter"),
    ("invalid_api_key", "auth"),
    ("authentication_error", "auth"),
    ("model_not_found", "not_found"),
    ("deadline_exceeded", "timeout"),
    ("timed out", "timeout"),
)

# Exception class names of the common SDKs (openai, anthropic, httpx, google) -> kind.
_TYPE_KINDS = {
    "ratelimiterror": "rate_limit",
    "apitimeouterror": "timeout",
    "timeouterror": "timeout",
    "readtimeout": "timeout",
    "timeout": "timeout",
    "apiconnectionerror": "connection",
    "connecterror": "connection",
    "connectionerror": "connection",
    "authenticationerror": "auth",
    "permissiondeniederror": "permission",
    "notfounderror": "not_found",
    "badrequesterror": "bad_request",
    "unprocessableentityerror": "bad_request",
    "internalservererror": "server_error",
    "serviceunavailableerror": "overloaded",
    "contentfilterfinishreasonerror": "content_filter",
    "lengthfinishreasonerror": "context_length_exceeded",
    "cancellederror": "cancelled",
}

_STATUS_KINDS = {400: "bad_request", 401: "auth", 403: "permission", 404: "not_found",
                 408: "timeout", 413: "context_length_exceeded", 422: "bad_request",
                 429: "rate_limit", 503: "overloaded", 504: "timeout", 529: "overloaded"}

_CLASS_WRAPPER = re.compile(r"^<class '([^']+)'>$")
_HTTP_STATUS_IN_TEXT = re.compile(r"(?:error code|status(?: code)?|http)[:= ]+(\d{3})\b", re.I)


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    is_error: bool
    kind: str | None = None
    error_type: str | None = None
    http_status: int | None = None


NO_ERROR = ErrorInfo(is_error=False)


def normalise_error_type(value: AttrValue) -> str | None:
    """`"<class 'openai.RateLimitError'>"` -> `"openai.RateLimitError"`; other values unchanged."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    match = _CLASS_WRAPPER.match(text)
    return match.group(1) if match else text


def classify_error(span: RawSpan) -> ErrorInfo:
    """What went wrong in a span, if anything (status ERROR or an `error.type` attribute)."""
    error_type = normalise_error_type(span.attributes.get("error.type"))
    texts = [span.status_message]
    for event in span.events:
        if event.name == "exception":
            error_type = error_type or normalise_error_type(event.attributes.get("exception.type"))
            texts.append(str(event.attributes.get("exception.message") or ""))
    if span.status_code != STATUS_ERROR and error_type is None:
        return NO_ERROR
    http_status = _http_status(span, texts, error_type)
    return ErrorInfo(
        is_error=True,
        kind=_kind(texts, error_type, http_status),
        error_type=error_type,
        http_status=http_status,
    )


def _http_status(span: RawSpan, texts: list[str], error_type: str | None) -> int | None:
    for key in ("http.response.status_code", "http.status_code"):
        value = span.attributes.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    if error_type and error_type.isascii() and error_type.isdigit() and len(error_type) == 3:
        return int(error_type)  # semconv allows the status code itself as error.type
    for text in texts:
        match = _HTTP_STATUS_IN_TEXT.search(text)
        if match:
            return int(match.group(1))
    return None


def _kind(texts: list[str], error_type: str | None, http_status: int | None) -> str:
    lowered = " ".join(texts).lower()
    for needle, kind in _CODE_KINDS:
        if needle in lowered:
            return kind
    if error_type:
        short = error_type.rsplit(".", 1)[-1].lower()
        if short in _TYPE_KINDS:
            return _TYPE_KINDS[short]
    if http_status is not None:
        if http_status in _STATUS_KINDS:
            return _STATUS_KINDS[http_status]
        if http_status >= 500:
            return "server_error"
    return "other"
