"""The plain-data form of a window bucket: what crosses process boundaries, what rollup rings
and recovery snapshots hold.

In: a `Bucket`'s contents (`Bucket.to_state`). Out: a frozen `BucketState` of ints, strings,
tuples and sketch bytes (positional pickling, a few hundred bytes for a small bucket) and its
`pack`ed blob.

Blob format 2 (`pack`): a 0x02 byte, then raw deflate, against the preset dictionary of
`blob_dict`, of the pickled field tuple (`fields_of`: no class names; sketches as
`(count, zero_count, bins)`; 32-hex trace ids as their 16 bytes). About a third smaller than
format 1 (zlib of the pickled `BucketState`), which `unpack` still reads.
"""

from __future__ import annotations

import pickle
import zlib
from dataclasses import dataclass
from typing import Any

from metrics.blob_dict import ZDICT_V2
from metrics.bounded import Exemplar
from metrics.cost_mix import ModelCostState
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
    cost_mix: tuple[ModelCostState, ...] = ()
    """Priced calls per model (`metrics.cost_mix`); last with a default, so states pickled
    before it existed still load."""

    @property
    def records(self) -> int:
        """Spans and separate evaluation results folded in."""
        return (self.spans_llm + self.spans_embedding + self.spans_retrieval
                + self.spans_request + self.eval_results)

    def __reduce__(self) -> tuple[type[BucketState], tuple[Any, ...]]:
        # Positional pickling keeps a small bucket at a few hundred bytes (no field names).
        return (BucketState, tuple(getattr(self, name) for name in self.__slots__))


_FORMAT_2 = 2
_FORMAT_2_BYTE = bytes([_FORMAT_2])
_SKETCHES = BucketState.__slots__.index("sketches")
_EXEMPLARS = BucketState.__slots__.index("exemplars")
_SAFETY = BucketState.__slots__.index("safety_failure_traces")
Fields = tuple[Any, ...]
"""`BucketState`'s fields in order, sketches as `(count, zero_count, bins)` tuples."""


def fields_of(state: BucketState) -> Fields:
    """The state's fields as plain tuples (the order of `BucketState.__slots__`)."""
    fields = [getattr(state, name) for name in BucketState.__slots__]
    fields[_SKETCHES] = tuple(None if k is None else (k.count, k.zero_count, k.bins)
                              for k in state.sketches)
    return tuple(fields)


def pack(state: BucketState) -> bytes:
    """Compact blob of a state, for rollup rings and snapshots (format 2, module docstring)."""
    return pack_fields(fields_of(state))


def pack_fields(fields: Fields) -> bytes:
    """`pack` of a state given as its `fields_of` tuple (`Bucket.pack` builds it directly)."""
    packed = list(fields)
    packed[_EXEMPLARS] = tuple([(e, d, _id_bytes(t)) for e, d, t in fields[_EXEMPLARS]])
    packed[_SAFETY] = tuple([_id_bytes(t) for t in fields[_SAFETY]])
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, ZDICT_V2)
    body = compressor.compress(pickle.dumps(tuple(packed), protocol=5)) + compressor.flush()
    return _FORMAT_2_BYTE + body


def unpack_fields(blob: bytes) -> Fields:
    """The `fields_of` the state a `pack` blob holds (no `BucketState` built)."""
    # Only blobs made by `pack` reach here (rings and our own snapshots), never network input.
    if blob[0] == _FORMAT_2:
        decompressor = zlib.decompressobj(-15, ZDICT_V2)
        body = decompressor.decompress(memoryview(blob)[1:])
        fields = list(pickle.loads(body))  # noqa: S301
        # (views unpack up to 60 blobs each: id conversion inlined, empty tuples kept)
        fields[_EXEMPLARS] = tuple([(e, d, t.hex() if t.__class__ is bytes else t)
                                    for e, d, t in fields[_EXEMPLARS]])
        if fields[_SAFETY]:
            fields[_SAFETY] = tuple([_id_text(t) for t in fields[_SAFETY]])
        return tuple(fields)
    state = pickle.loads(zlib.decompress(blob))  # noqa: S301  # format 1
    if not isinstance(state, BucketState):
        raise TypeError(f"blob holds {type(state).__name__}, not a BucketState")
    return fields_of(state)


def unpack(blob: bytes) -> BucketState:
    """The state a `pack` blob holds."""
    fields = list(unpack_fields(blob))
    fields[_SKETCHES] = tuple(None if k is None else SketchState(*k) for k in fields[_SKETCHES])
    return BucketState(*fields)


def _id_bytes(trace_id: str) -> str | bytes:
    # A lowercase 32-hex trace id packs as its 16 bytes (half the size, and incompressible
    # either way); anything else stays text.
    if len(trace_id) == 32:
        try:
            raw = bytes.fromhex(trace_id)
        except ValueError:
            return trace_id
        if raw.hex() == trace_id:
            return raw
    return trace_id


def _id_text(trace_id: str | bytes) -> str:
    return trace_id.hex() if isinstance(trace_id, bytes) else trace_id
