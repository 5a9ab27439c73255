"""Reading detector parameters from an alerts.toml table: durations like "5m" parsed once,
numbers checked against their range, unknown keys rejected. Errors name parameter, value and
what is allowed.

>>> parse_duration("1h30m")
datetime.timedelta(seconds=5400)
>>> Params({"sigma": 3}, "zscore").number("sigma", default=3.0, low=0.5, high=20)
3.0
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from detectors.base import DetectorConfigError

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """"30s", "5m", "1h30m", "7d", "2w" -> timedelta. Raises ValueError naming the text."""
    cleaned = text.strip().replace(" ", "")
    if not cleaned:
        raise ValueError("empty duration; expected e.g. 30s, 5m, 1h, 7d")
    position, total = 0, 0.0
    for match in _DURATION.finditer(cleaned):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position != len(cleaned):
        raise ValueError(f"{text!r} is not a duration; expected e.g. 30s, 5m, 1h30m, 7d")
    return timedelta(seconds=total)


class Params:
    """Typed access to one detector table; call `done()` last to reject unknown keys."""

    def __init__(self, raw: Mapping[str, Any], kind: str) -> None:
        self._raw = dict(raw)
        self._kind = kind
        self._used: set[str] = set()

    def _fail(self, name: str, problem: str) -> DetectorConfigError:
        return DetectorConfigError(f"detector {self._kind}: {name} {problem}")

    def number(self, name: str, *, default: float, low: float | None = None,
               high: float | None = None, low_inclusive: bool = True) -> float:
        self._used.add(name)
        value = self._raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(name, f"is {value!r}; expected a number")
        below = low is not None and (value < low if low_inclusive else value <= low)
        if below or (high is not None and value > high):
            bounds = (f"{'>=' if low_inclusive else '>'} {low}" if low is not None else "",
                      f"<= {high}" if high is not None else "")
            raise self._fail(name, f"is {value}; expected {' and '.join(b for b in bounds if b)}")
        return float(value)

    def integer(self, name: str, *, default: int, low: int | None = None,
                high: int | None = None) -> int:
        value = self._raw.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self._used.add(name)
            raise self._fail(name, f"is {value!r}; expected a whole number")
        return int(self.number(name, default=default, low=low, high=high))

    def duration(self, name: str, *, default: str, low: timedelta | None = None,
                 high: timedelta | None = None) -> timedelta:
        self._used.add(name)
        value = self._raw.get(name, default)
        if not isinstance(value, str):
            raise self._fail(name, f"is {value!r}; expected a duration such as \"5m\"")
        try:
            parsed = parse_duration(value)
        except ValueError as exc:
            raise self._fail(name, str(exc)) from None
        if (low is not None and parsed < low) or (high is not None and parsed > high):
            raise self._fail(name, f"is {value}; expected between {low} and {high}")
        return parsed

    def choice(self, name: str, *, default: str, allowed: tuple[str, ...]) -> str:
        self._used.add(name)
        value = self._raw.get(name, default)
        if value not in allowed:
            raise self._fail(name, f"is {value!r}; expected one of {', '.join(allowed)}")
        return str(value)

    def flag(self, name: str, *, default: bool) -> bool:
        self._used.add(name)
        value = self._raw.get(name, default)
        if not isinstance(value, bool):
            raise self._fail(name, f"is {value!r}; expected true or false")
        return value

    def done(self) -> None:
        unknown = sorted(set(self._raw) - self._used)
        if unknown:
            raise DetectorConfigError(
                f"detector {self._kind}: unknown parameter(s) {', '.join(unknown)}; "
                f"expected {', '.join(sorted(self._used))}")
