"""A Bytewax sink that hands each batch to a Python callable (reports, tests, files)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from bytewax.outputs import DynamicSink, StatelessSinkPartition

X = TypeVar("X")


class _CallbackPartition(StatelessSinkPartition[X], Generic[X]):
    def __init__(self, write: Callable[[list[X]], None]) -> None:
        self._write = write

    def write_batch(self, items: list[X]) -> None:
        self._write(items)


class CallbackSink(DynamicSink[X], Generic[X]):
    """Calls `write(items)` for every batch, on every worker (the callable must be thread-safe
    when the flow runs several workers in one process)."""

    def __init__(self, write: Callable[[list[X]], None]) -> None:
        self._write = write

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _CallbackPartition[X]:
        return _CallbackPartition(self._write)
