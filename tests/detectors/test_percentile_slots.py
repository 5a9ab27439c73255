"""A percentile detector makes a ring slot's store when the slot first learns a point (None
until then): it scores, learns, clears slots and snapshots exactly as with every slot holding
an empty store from the start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from detectors import build
from detectors.percentile import Percentile, _Store

START = datetime(2025, 3, 3, tzinfo=UTC)


def test_lazy_slots_behave_as_eager_empty_ones() -> None:
    params = {"kind": "percentile", "window": "3d", "quantile": 0.95, "factor": 2.0,
              "min_count": 20}
    lazy, eager = build(params), build(params)
    assert isinstance(lazy, Percentile) and isinstance(eager, Percentile)
    assert all(bucket is None for bucket in lazy._buckets)
    eager._buckets = [_Store.empty() for _ in eager._ring.ids]
    assert lazy.snapshot() == eager.snapshot()
    rng = np.random.default_rng(7)
    # 4 days every 20 minutes, the second silent: slots wrap, clear, and stay empty
    scored = 0
    for step in range(4 * 72):
        if 72 <= step < 144:
            continue
        at = START + timedelta(minutes=20 * step)
        value = float(rng.lognormal(0.0, 0.5)) * (10.0 if step % 50 == 49 else 1.0)
        n = int(rng.integers(1, 30))
        score = lazy.score(value, at, n=n)
        assert score == eager.score(value, at, n=n)
        scored += score is not None
        lazy.learn(value, at, n=n)
        eager.learn(value, at, n=n)
        assert lazy.snapshot() == eager.snapshot()
    assert scored > 50
    assert any(bucket is None for bucket in lazy._buckets)
    restored = Percentile.restore(lazy.snapshot())
    assert restored.snapshot() == lazy.snapshot()
