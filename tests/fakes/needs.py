"""What pre-aggregation gives a series that reads only some parts (`SeriesNeeds`), derived
from what it gives a series that reads everything: the reference of the needs tests."""

from __future__ import annotations

from dataclasses import replace

from metrics.bucket import Bucket, SpanPlan, masked_plan
from metrics.partial import Partial, SeriesNeeds


def without_sketches(bucket: Bucket, sketches: int) -> Bucket:
    """A copy of `bucket` with only the sketches of mask `sketches`."""
    kept = Bucket.from_state(bucket.to_state())
    kept.sketches = [s if sketches >> i & 1 else None for i, s in enumerate(kept.sketches)]
    return kept


def as_needed(partial: Partial, need: SeriesNeeds) -> Partial:
    """`partial` (of a series that reads everything) as a series with `need` gets it."""
    return replace(
        partial,
        folded=None if partial.folded is None else without_sketches(partial.folded,
                                                                    need.sketches),
        plans=tuple(masked_plan(p, need.sketches) if isinstance(p, SpanPlan) else p
                    for p in partial.plans),
        sessions=partial.sessions if need.sessions else ())
