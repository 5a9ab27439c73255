"""The detector contract: score a point against an online baseline, then learn it.

In: one value per series per evaluation step (a window's metric), with its event time and,
where it matters, the sample size behind it. Out: a `Score` that explains itself (value,
baseline, spread, calibrated anomaly in [0, 1]) or None while the baseline is warming up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Protocol, Self, TypeVar, runtime_checkable

StateT = TypeVar("StateT")


@dataclass(frozen=True, slots=True)
class Score:
    """A verdict on one point.

    `is_anomalous` is the point-wise breach (true for every point outside the band, so rules can
    apply `for:`); `is_onset` is true only for the first anomalous point of an incident, so a
    step that stays up gives one signal, not one per point.
    """

    value: float
    baseline: float
    spread: float
    anomaly: float
    """Calibrated anomaly score in [0, 1]: how unusual the point is for this series."""
    is_anomalous: bool
    is_onset: bool
    detector: str
    detail: str = ""
    """Short human-readable explanation, e.g. `z=4.2 vs hour-of-week baseline`."""


@runtime_checkable
class Detector(Protocol[StateT]):
    """Online detector for one series. For each point: `score` first, then `learn`.

    `score` never changes state. `snapshot()` is a frozen dataclass of plain data with a
    `version` field; `restore(snapshot())` continues exactly like the original.
    """

    kind: ClassVar[str]

    def score(self, value: float, at: datetime, *, n: int = 1) -> Score | None: ...

    def learn(self, value: float, at: datetime, *, n: int = 1) -> None: ...

    def snapshot(self) -> StateT: ...

    @classmethod
    def restore(cls, state: StateT) -> Self: ...


def check_version(kind: str, version: int, expected: int) -> None:
    """Refuse a snapshot of another state layout: restoring it would misread its fields."""
    if version != expected:
        raise ValueError(f"{kind} snapshot version {version}; expected {expected}")


class DetectorConfigError(ValueError):
    """A detector parameter that is missing, unknown or out of range; the message names the
    parameter, the value and what is allowed."""


DetectorFactory = Callable[[Mapping[str, Any]], Detector[Any]]
_REGISTRY: dict[str, DetectorFactory] = {}
_EXAMPLES: dict[str, dict[str, Any]] = {}


def register(kind: str, *, example: Mapping[str, Any]) -> Callable[[DetectorFactory],
                                                                   DetectorFactory]:
    """Register a factory under `kind` (the `kind` key of a detector table in alerts.toml).

    `example` is a valid parameter table (without `kind`); the shared detector check suite
    builds every registered detector from it.
    """

    def decorate(factory: DetectorFactory) -> DetectorFactory:
        if kind in _REGISTRY:
            raise ValueError(f"detector kind {kind!r} registered twice")
        _REGISTRY[kind] = factory
        _EXAMPLES[kind] = dict(example)
        return factory

    return decorate


def example_params(kind: str) -> dict[str, Any]:
    """The example parameter table a detector kind was registered with (plus `kind`)."""
    return {"kind": kind, **_EXAMPLES[kind]}


def kinds() -> list[str]:
    """Registered detector kinds, sorted."""
    return sorted(_REGISTRY)


def build(params: Mapping[str, Any]) -> Detector[Any]:
    """Build a detector from its alerts.toml table, e.g. `{"kind": "zscore", "sigma": 3}`."""
    kind = params.get("kind")
    if kind not in _REGISTRY:
        raise DetectorConfigError(
            f"kind {kind!r} is unknown; expected one of {', '.join(kinds())}")
    return _REGISTRY[str(kind)]({k: v for k, v in params.items() if k != "kind"})


def maker(params: Mapping[str, Any]) -> Callable[[], Detector[Any]]:
    """A function making fresh detectors equal to `build(params)`'s, the table read and checked
    once (rule evaluation makes one per rule and series; reading the table was most of that).

    Factories parse the table into a frozen `config` and return `type(detector)(config)`;
    that is checked once here on the first detector (a fresh one from its config must have
    the same snapshot), else each detector is `build(params)` again.

    Raises:
        DetectorConfigError: as `build`.
    """
    first = build(params)
    config = getattr(first, "config", None)
    cls = type(first)
    try:
        same = config is not None and \
            cls(config).snapshot() == first.snapshot()  # type: ignore[call-arg]
    except TypeError:  # a constructor taking more than the config
        same = False
    if not same:
        table = dict(params)
        return lambda: build(table)
    return lambda: cls(config)  # type: ignore[call-arg]
