"""Where Bytewax runs each step key: the assembly shards must spread evenly over the workers
(key i on worker i % n), or one process does most of the assembly and pre-aggregation."""

from __future__ import annotations

import threading
from collections import Counter

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main

from flows.pipeline import ASSEMBLY_KEYS, WINDOW_KEYS


def _worker_of_keys(keys: tuple[str, ...], workers: int) -> dict[str, str]:
    """Key -> name of the worker thread whose stateful step got it, in a real Bytewax run."""
    flow = Dataflow("placement")
    keyed = op.input("in", flow, TestingSource([(key, None) for key in keys]))

    def where(_: object, __: object) -> tuple[None, str]:
        return None, threading.current_thread().name

    out: list[tuple[str, str]] = []
    op.output("out", op.stateful_map("where", keyed, where), TestingSink(out))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)  # type: ignore[no-untyped-call]
    return dict(out)


@pytest.mark.parametrize("workers", [2, 3, 4])
def test_assembly_keys_spread_evenly_over_workers(workers: int) -> None:
    placed = _worker_of_keys(ASSEMBLY_KEYS, workers)
    assert set(placed) == set(ASSEMBLY_KEYS)
    per_worker = Counter(placed.values())
    assert len(per_worker) == workers
    assert max(per_worker.values()) - min(per_worker.values()) <= 1, per_worker
    # Key i and key i + workers share a worker (i % n), whatever the worker's thread name.
    for i in range(len(ASSEMBLY_KEYS) - workers):
        assert placed[ASSEMBLY_KEYS[i]] == placed[ASSEMBLY_KEYS[i + workers]]


def test_window_keys_split_in_half_over_two_workers() -> None:
    per_worker = Counter(_worker_of_keys(WINDOW_KEYS, 2).values())
    assert sorted(per_worker.values()) == [8, 8]


def test_shard_keys_are_distinct() -> None:
    assert len(set(ASSEMBLY_KEYS)) == len(ASSEMBLY_KEYS) == 16
    assert not set(ASSEMBLY_KEYS) & set(WINDOW_KEYS)
