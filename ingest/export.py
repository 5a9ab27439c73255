"""Records -> JSON objects, as printed by `spanwatch inspect` and written by the demo.

Field names are the `LLMSpan` / `EvalResult` field names; `record` says which one it is.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from ingest.span import EvalResult, LLMSpan


def record_to_json(record: LLMSpan | EvalResult) -> dict[str, Any]:
    if isinstance(record, LLMSpan):
        doc = {"record": "span", **asdict(record), "duration_s": record.duration_s}
        doc["finish_reasons"] = list(record.finish_reasons)
        doc["evals"] = [asdict(e) for e in record.evals]
        return doc
    return {"record": "eval", **asdict(record)}
