"""`detectors.maker`: fresh detectors equal to `build`'s, the table read once; detectors
whose class cannot be remade from its config are built from the table every time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import detectors
from detectors import DetectorConfigError, build, example_params, maker
from detectors import base as detector_base
from detectors.threshold import Threshold, _build

KINDS = detectors.kinds()
START = datetime(2025, 3, 3, tzinfo=UTC)


@pytest.mark.parametrize("kind", KINDS)
def test_made_detectors_are_fresh_and_equal_to_built_ones(kind: str) -> None:
    params = example_params(kind)
    make = maker(params)
    first, second = make(), make()
    assert first is not second
    assert type(first) is type(build(params))
    assert first.snapshot() == build(params).snapshot()
    # independent state: one learning a stream leaves the other as built
    for minute in range(120):
        first.learn(1.0 + minute % 7, START + timedelta(minutes=minute), n=20)
    assert second.snapshot() == build(params).snapshot()
    assert make().snapshot() == build(params).snapshot()


def test_a_maker_checks_the_table_at_once() -> None:
    with pytest.raises(DetectorConfigError, match="unknown"):
        maker({"kind": "nope"})
    with pytest.raises(DetectorConfigError, match="sigma"):
        maker({**example_params("zscore"), "sigma": -1})


class _Counted(Threshold):
    """A detector whose constructor needs more than its config: not remade from it."""

    made = 0

    def __init__(self, config: Any, extra: int) -> None:
        super().__init__(config)
        type(self).made += 1


def test_detectors_that_cannot_be_remade_from_their_config_are_built_each_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[Mapping[str, Any]] = []

    def factory(params: Mapping[str, Any]) -> _Counted:
        builds.append(params)
        threshold = _build(params)
        assert isinstance(threshold, Threshold)
        return _Counted(threshold.config, extra=len(builds))

    monkeypatch.setitem(detector_base._REGISTRY, "counted", factory)
    table = {"kind": "counted", "op": ">", "value": 2.0}
    make = maker(table)
    table["value"] = 9.0  # the maker keeps the table it was given
    made = [make(), make()]
    assert len(builds) == 3  # the check's, then one per detector
    assert made[0] is not made[1]
    assert all(isinstance(d, _Counted) and d.config.bound == 2.0 for d in made)
    assert made[0].snapshot() == build({"kind": "threshold", "op": ">", "value": 2.0}).snapshot()
