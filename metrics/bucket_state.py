"""The plain-data form of a window bucket: what crosses process boundaries, what rollup rings
and recovery snapshots hold.

In: a `Bucket`'s contents (`Bucket.to_state`). Out: a frozen `BucketState` of ints, strings,
tuples and sketch bytes (positional pickling, a few hundred bytes for a small bucket) and its
`pack`ed blob (pickle + zlib, about 60% of that).
"""

from __future__ import annotations

import pickle
import zlib
from dataclasses import dataclass
from typing import Any

from metrics.bounded import Exemplar
from metrics.sketch import SketchState

STATE_VERSION = 1

COUNTERS: tuple[str, ...] = (
    "spans_llm", "spans_embedding", "spans_retrieval", "spans_request",
    "errors_llm", "errors_embedding", "errors_retrieval", "errors_request",
    "eval_results", "refusals",
    "cache_known", "cache_hits", "feedback_known", "feedback_negative",
    "regen_known", "regenerated", "finish_known", "finish_length",
    "cost_known", "cost_sum_pusd",
    "input_tokens_known", "input_tokens_sum", "output_tokens_known", "output_tokens_sum",
    "quality_n", "quality_sum_nano", "groundedness_n", "groundedness_sum_nano",
    "heuristic_pass", "heuristic_total", "safety_failures", "safety_total", "evals_other",
    "sessions_closed", "sessions_unpriced", "sessions_closed_early", "session_cost_sum_pusd",
    "late_folded", "too_late",
)
"""Additive integer fields, shared by `Bucket` and `BucketState`."""

@dataclass(frozen=True, slots=True)
class BucketState:
    """Plain-data state of a `Bucket` (ints, tuples, bytes). Equal contents, equal states."""

    version: int
    spans_llm: int
    spans_embedding: int
    spans_retrieval: int
    spans_request: int
    errors_llm: int
    errors_embedding: int
    errors_retrieval: int
    errors_request: int
    eval_results: int
    refusals: int
    cache_known: int
    cache_hits: int
    feedback_known: int
    feedback_negative: int
    regen_known: int
    regenerated: int
    finish_known: int
    finish_length: int
    cost_known: int
    cost_sum_pusd: int
    input_tokens_known: int
    input_tokens_sum: int
    output_tokens_known: int
    output_tokens_sum: int
    quality_n: int
    quality_sum_nano: int
    groundedness_n: int
    groundedness_sum_nano: int
    heuristic_pass: int
    heuristic_total: int
    safety_failures: int
    safety_total: int
    evals_other: int
    sessions_closed: int
    sessions_unpriced: int
    sessions_closed_early: int
    session_cost_sum_pusd: int
    late_folded: int
    too_late: int
    session_cost_max_pusd: int
    min_event_unix_ns: int | None
    max_event_unix_ns: int | None
    error_kinds: tuple[tuple[str, int], ...]
    finish_reasons: tuple[tuple[str, int], ...]
    unknown_cost: tuple[tuple[str, int], ...]
    sketches: tuple[SketchState | None, ...]
    exemplars: tuple[Exemplar, ...]
    safety_failure_traces: tuple[str, ...]
    prompt_template_versions: tuple[str, ...]
    models: tuple[str, ...]
    app_versions: tuple[str, ...]
    truncated_versions: tuple[bool, bool, bool]
    """Whether more prompt template versions / models / app versions were seen than kept."""

    @property
    def records(self) -> int:
        """Spans and separate evaluation results folded in."""
        return (self.spans_llm + self.spans_embedding + self.spans_retrieval
                + self.spans_request + self.eval_results)

    def __reduce__(self) -> tuple[type[BucketState], tuple[Any, ...]]:
        # Positional pickling keeps a small bucket at a few hundred bytes (no field names).
        return (BucketState, tuple(getattr(self, name) for name in self.__slots__))


def pack(state: BucketState) -> bytes:
    """Compact blob of a state, for rollup rings and snapshots (pickle of plain data + zlib)."""
    return zlib.compress(pickle.dumps(state, protocol=5), 1)


def unpack(blob: bytes) -> BucketState:
    """The state a `pack` blob holds."""
    # Only blobs made by `pack` reach here (rings and our own snapshots), never network input.
    state = pickle.loads(zlib.decompress(blob))  # noqa: S301
    if not isinstance(state, BucketState):
        raise TypeError(f"blob holds {type(state).__name__}, not a BucketState")
    return state
