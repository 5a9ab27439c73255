"""What rule evaluation reads of a view, for tests comparing views built different ways."""

from __future__ import annotations

from datetime import timedelta

from metrics.bucket import Bucket
from metrics.bucket_state import COUNTERS
from metrics.catalog import compute


def read_view(bucket: Bucket | None, over: timedelta, metrics: list[str]) -> object:
    """What rule evaluation reads of a view."""
    if bucket is None:
        return None
    return ([getattr(bucket, name) for name in COUNTERS], bucket.session_cost_max_pusd,
            bucket.is_empty, bucket.exemplars.items,
            [(s.values, s.is_truncated) for s in (bucket.prompt_template_versions,
                                                  bucket.models, bucket.app_versions)],
            [compute(metric, bucket, over) for metric in metrics])
