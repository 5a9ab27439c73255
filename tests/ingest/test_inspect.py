"""`spanwatch inspect` over both file-exporter formats gives the same records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.recorded import RecordingError, read_messages, write_proto_messages
from spanwatch.cli import main
from tests.fakes.genai_trace import SECRET_PROMPT, chat_trace
from tests.fakes.otel_spans import T0_NS, SpanRecorder, otlp_json, otlp_proto


@pytest.fixture
def recordings(tmp_path: Path) -> tuple[Path, Path]:
    recorder = SpanRecorder(service="support-bot")
    traces = [chat_trace(recorder, T0_NS + i * 10**9) for i in range(3)]
    proto_file, json_file = tmp_path / "spans.pb", tmp_path / "spans.jsonl"
    write_proto_messages(proto_file, [otlp_proto(t.spans) for t in traces])
    json_file.write_text("\n".join(otlp_json(t.spans).decode() for t in traces) + "\n")
    return proto_file, json_file


def test_inspect_prints_assembled_spans_from_both_formats(
        recordings: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for path in recordings:
        assert main(["inspect", str(path)]) == 0
        outputs.append([json.loads(line) for line in capsys.readouterr().out.splitlines()])
    proto_lines, json_lines = outputs
    assert proto_lines == json_lines
    llm = [line for line in proto_lines if line["kind"] == "llm"]
    assert len(llm) == 3
    assert llm[0]["context"]["session_id"] == "sess-42"  # joined from the root span
    assert llm[0]["time_to_first_token_s"] == 0.4
    assert SECRET_PROMPT not in json.dumps(proto_lines)


def test_inspect_reports_bad_messages_and_exits_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text('{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": 5}]}]}]}\n')
    assert main(["inspect", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (f"spanwatch inspect: {path}: message 1: malformed JSON message: "
                           "resourceSpans[0].scopeSpans[0].spans[0].traceId: id must be a hex "
                           "string, got NoneType")


def test_truncated_protobuf_recording_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "cut.pb"
    path.write_bytes(b"\x00\x00\x00\x10abc")
    with pytest.raises(RecordingError, match=r"byte 0: message cut short \(3 of 16 bytes\)"):
        list(read_messages(path))
