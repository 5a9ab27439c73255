"""`catalog.metric_function`: the function and minutes `compute` uses, looked up once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metrics.bucket import Bucket
from metrics.catalog import METRICS, UnknownMetricError, compute, metric_function
from tests.metrics.strategies import Record, records


@settings(max_examples=20, deadline=None)
@given(records(max_size=30), st.sampled_from([timedelta(minutes=1), timedelta(minutes=7),
                                              timedelta(hours=1), timedelta(days=1)]))
def test_metric_function_gives_what_compute_gives(recs: list[Record], window: timedelta) -> None:
    bucket = Bucket()
    for record in recs:
        bucket.fold(record)
    for metric in METRICS:
        function, minutes = metric_function(metric, window)
        assert function(bucket, minutes) == compute(metric, bucket, window)


def test_metric_function_refuses_what_compute_refuses() -> None:
    with pytest.raises(UnknownMetricError, match="error_rat"):
        metric_function("error_rat", timedelta(minutes=5))
    with pytest.raises(ValueError, match="positive"):
        metric_function("error_rate", timedelta(0))
