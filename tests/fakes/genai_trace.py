"""One realistic GenAI trace per call, made with the real OpenTelemetry SDK: an application root
span (SERVER) carrying the app context, and a streaming chat call under it with a first-chunk
event, token usage, content attributes (which spanwatch must drop) and an evaluation event."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from tests.fakes.otel_spans import SpanRecorder, hex_ids

MS = 1_000_000
SECRET_PROMPT = "my card number is 4111 1111 1111 1111"


@dataclass(frozen=True)
class ChatTrace:
    spans: list[ReadableSpan]
    trace_id: str
    root_span_id: str
    llm_span_id: str


def chat_trace(recorder: SpanRecorder, start_ns: int, *, model: str = "gpt-4o-mini",
               error: str | None = None, prompt_version: str = "support-v7") -> ChatTrace:
    """Root `POST /chat` (100..2100 ms) with a child `chat <model>` call (150..1650 ms)."""
    attrs = {
        "gen_ai.operation.name": "chat", "gen_ai.system": "openai",
        "gen_ai.request.model": model, "gen_ai.response.model": f"{model}-2024-07-18",
        "gen_ai.request.stream": True,
        "gen_ai.input.messages": f'[{{"role": "user", "content": "{SECRET_PROMPT}"}}]',
        "gen_ai.prompt.0.content": SECRET_PROMPT,
    }
    events = []
    if error is None:
        attrs.update({"gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 300,
                      "gen_ai.usage.cache_read_input_tokens": 200,
                      "gen_ai.response.finish_reasons": ("stop",)})
        events = [("gen_ai.content.completion.chunk", start_ns + 550 * MS, {}),
                  ("gen_ai.content.completion.chunk", start_ns + 600 * MS, {}),
                  ("gen_ai.evaluation.result", start_ns + 1650 * MS,
                   {"gen_ai.evaluation.name": "relevance",
                    "gen_ai.evaluation.score.value": 0.875,
                    "gen_ai.evaluation.explanation": SECRET_PROMPT})]
    else:
        attrs["error.type"] = "<class 'openai.RateLimitError'>"
        events = [("exception", start_ns + 1650 * MS,
                   {"exception.type": "openai.RateLimitError", "exception.message": error})]
    with recorder.span("POST /chat", start_ns=start_ns + 100 * MS, end_ns=start_ns + 2100 * MS,
                       kind=SpanKind.SERVER, attributes={
                           "http.route": "/chat", "app.prompt_template_version": prompt_version,
                           "session.id": "sess-42", "user.id": "user-7",
                           "app.version": "1.4.2"}) as root, \
         recorder.span(f"chat {model}", start_ns=start_ns + 150 * MS,
                       end_ns=start_ns + 1650 * MS, attributes=attrs, parent=root,
                       error=error, events=events):
        pass
    spans = recorder.take()
    llm, root_span = spans  # the SDK exports the child first, as collectors receive it
    trace_id, root_id = hex_ids(root_span)
    _, llm_id = hex_ids(llm)
    return ChatTrace(spans=spans, trace_id=trace_id, root_span_id=root_id, llm_span_id=llm_id)
