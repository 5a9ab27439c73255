"""Label matchers, and silences: matchers that mute matching alerts between two instants.

In: a JSON file of silences (`spanwatch silence add|list|expire` edit it). Out: `Silence`s that
the alert lifecycle asks with `matches(rule, labels, at)`; a silenced alert still changes state,
it only does not notify (its event carries the silence id in `suppressed_by`). The same
`Matcher`s select records for rule `filters` and alerts for inhibition (`rules.config`).

>>> matcher = Matcher.parse("model=~gpt-4.*")
>>> str(matcher), matcher.matches("gpt-4o"), matcher.matches("o3-gpt-4")
('model=~gpt-4.*', True, False)
>>> [str(m) for m in parse_matchers({"service": "checkout", "environment": "!dev"})]
['service=checkout', 'environment!=dev']
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from rules.records import Labels

_MATCHER = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

MatchOp = Literal["=", "!=", "=~", "!~"]


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


@dataclass(frozen=True, slots=True)
class Matcher:
    """`name op value` on alert labels; regexes are anchored (Prometheus semantics) and an
    absent label matches as the empty string."""

    name: str
    op: MatchOp
    value: str

    @classmethod
    def of(cls, name: str, op: MatchOp, value: str) -> Matcher:
        if not _LABEL_NAME.match(name):
            raise ValueError(f"label name {_show(name)} is not valid; expected letters, "
                             f"digits and _")
        if op in ("=~", "!~"):
            try:
                _regex(value)
            except re.error as exc:
                raise ValueError(f"regex {_show(value)} does not compile: {exc}") from None
        return cls(name, op, value)

    @classmethod
    def parse(cls, text: str) -> Matcher:
        """`service=checkout`, `env!=dev`, `model=~"gpt-4.*"`, `model!~o1.*`."""
        match = _MATCHER.fullmatch(text)
        if match is None:
            raise ValueError(f"{_show(text)} is not a matcher; expected name=value, "
                             f"name!=value, name=~regex or name!~regex")
        name, op, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        return cls.of(name, op, value)  # type: ignore[arg-type]  # the regex admits only ops

    @classmethod
    def from_pair(cls, name: str, value: str) -> Matcher:
        """Table form: `"~re"` is =~, `"!~re"` is !~, `"!v"` is !=, anything else is =."""
        for prefix, op in (("!~", "!~"), ("~", "=~"), ("!", "!=")):
            if value.startswith(prefix):
                return cls.of(name, op, value[len(prefix):])  # type: ignore[arg-type]
        return cls.of(name, "=", value)

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = _regex(self.value).fullmatch(value) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def parse_matchers(raw: object) -> tuple[Matcher, ...]:
    """A matcher table (`{ service = "checkout", model = "~gpt-4.*" }`) or a list of matcher
    strings (`["service=checkout", "model=~gpt-4.*"]`)."""
    if isinstance(raw, tuple) and all(isinstance(m, Matcher) for m in raw):
        return raw
    if isinstance(raw, dict):
        matchers = []
        for name, value in raw.items():
            if not isinstance(value, str):
                raise ValueError(f"value of {name} is {_show(value)}; expected a string")
            matchers.append(Matcher.from_pair(name, value))
        return tuple(matchers)
    if isinstance(raw, list):
        if not all(isinstance(item, str) for item in raw):
            raise ValueError("expected matcher strings such as \"service=checkout\"")
        return tuple(Matcher.parse(item) for item in raw)
    raise ValueError(f"is {_show(raw)}; expected a table such as {{ service = \"checkout\" }} "
                     f"or a list such as [\"service=checkout\"]")


def matches_all(matchers: Collection[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches (an empty list matches everything)."""
    return all(m.matches(labels.get(m.name, "")) for m in matchers)


Matchers = Annotated[tuple[Matcher, ...], BeforeValidator(parse_matchers)]
"""A pydantic field of matchers, in either form `parse_matchers` reads."""


def _show(value: object) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


RETENTION = timedelta(days=7)
"""Expired silences are dropped from the file this long after they end (kept for `list --all`)."""

SilenceState = Literal["pending", "active", "expired"]


class SilencesError(ValueError):
    """The silences file or a silence is invalid; the message says where and what."""


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("has no time zone; write UTC, e.g. 2026-03-01T12:00:00Z")
    return value.astimezone(UTC)


def iso(value: datetime) -> str:
    """`2026-03-01T12:00:00Z`."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcTime = Annotated[datetime, AfterValidator(_utc), PlainSerializer(iso, return_type=str)]
def _matcher_texts(matchers: tuple[Matcher, ...]) -> list[str]:
    return [str(m) for m in matchers]


MatcherList = Annotated[Matchers, PlainSerializer(_matcher_texts, return_type=list[str])]


class Silence(BaseModel):
    """Mutes alerts whose labels (plus `rule`) match every matcher, from `starts_at` until
    `ends_at` (exclusive)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    matchers: Annotated[MatcherList, Field(min_length=1)]
    starts_at: UtcTime
    ends_at: UtcTime
    created_by: str = Field(min_length=1)
    comment: str = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Silence:
        if self.ends_at <= self.starts_at:
            raise ValueError(f"ends_at {iso(self.ends_at)} is not after starts_at "
                             f"{iso(self.starts_at)}")
        if all(m.matches("") for m in self.matchers):
            raise ValueError("every matcher also matches alerts without that label, so the "
                             "silence would mute everything; add one like service=checkout")
        return self

    def state(self, at: datetime) -> SilenceState:
        if at < self.starts_at:
            return "pending"
        return "active" if at < self.ends_at else "expired"

    def matches(self, rule: str, labels: Mapping[str, str] | Labels, at: datetime) -> bool:
        """Whether this silence mutes an alert of `rule` with `labels` at `at`. `labels` are
        the alert's labels (series and extra labels; add `tier` to match on it)."""
        if self.state(at) != "active":
            return False
        return matches_all(self.matchers, {**dict(labels), "rule": rule})


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    silences: tuple[Silence, ...] = ()


def matching(silences: Sequence[Silence], rule: str, labels: Mapping[str, str] | Labels,
             at: datetime) -> tuple[str, ...]:
    """Ids of the silences that mute this alert at `at` (for `AlertEvent.suppressed_by`)."""
    return tuple(s.id for s in silences if s.matches(rule, labels, at))


def lookup(silences: Sequence[Silence]) -> Callable[[str, Labels, datetime], str | None]:
    """`(rule, labels, at) -> id of the first matching silence or None`: the `is_silenced`
    callable `rules.inhibition.Inhibitor` takes."""
    frozen = tuple(silences)

    def is_silenced(rule: str, labels: Labels, at: datetime) -> str | None:
        return next((s.id for s in frozen if s.matches(rule, labels, at)), None)

    return is_silenced


def new_silence(matchers: Sequence[str], *, starts_at: datetime, ends_at: datetime,
                created_by: str, comment: str) -> Silence:
    """A silence with a fresh id. Raises SilencesError naming the bad argument."""
    try:
        parsed = tuple(Matcher.parse(text) for text in matchers)
        return Silence(id=uuid.uuid4().hex[:12], matchers=parsed, starts_at=starts_at,
                       ends_at=ends_at, created_by=created_by, comment=comment)
    except ValueError as exc:  # ValidationError is a ValueError
        raise SilencesError(_message(exc)) from None


def _message(exc: ValueError) -> str:
    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error["loc"])
        text = str(error["ctx"]["error"]) if error["type"] == "value_error" else error["msg"]
        parts.append(f"{field + ': ' if field else ''}{text}")
    return "; ".join(parts)


def load_silences(path: Path) -> tuple[Silence, ...]:
    """The silences in `path` (none if the file does not exist)."""
    try:
        data = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise SilencesError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        raw: Any = json.loads(data)
        return _File.model_validate(raw).silences
    except json.JSONDecodeError as exc:
        raise SilencesError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    except ValidationError as exc:
        raise SilencesError(f"{path}: {_message(exc)}") from None


def save_silences(path: Path, silences: Sequence[Silence]) -> None:
    """Write atomically: a temporary file in the same directory, fsync, then rename."""
    body = _File(silences=tuple(silences)).model_dump_json(indent=2) + "\n"
    directory = path.resolve().parent
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of `path` between concurrent `spanwatch silence` runs."""
    lock = path.resolve().parent / f".{path.name}.lock"
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _kept(silences: Sequence[Silence], now: datetime) -> list[Silence]:
    return [s for s in silences if s.ends_at > now - RETENTION]


def add_silence(path: Path, silence: Silence, *, now: datetime) -> None:
    """Append `silence` to the file (dropping silences that ended over `RETENTION` ago)."""
    with _locked(path):
        save_silences(path, [*_kept(load_silences(path), now), silence])


def expire_silence(path: Path, silence_id: str, *, now: datetime) -> Silence:
    """End the silence whose id is or starts with `silence_id` at `now`; returns it updated.

    Raises SilencesError if no silence or several match, or it has already expired.
    """
    with _locked(path):
        silences = load_silences(path)
        found = [s for s in silences if s.id.startswith(silence_id)] if silence_id else []
        if len(found) != 1:
            problem = "matches no silence" if not found else "matches several silences"
            raise SilencesError(f"id {silence_id!r} {problem}; see `spanwatch silence list "
                                f"--all`")
        target = found[0]
        if target.state(now) == "expired":
            raise SilencesError(f"silence {target.id} already ended at {iso(target.ends_at)}")
        # A pending silence expired before it began keeps starts_at < ends_at all the same.
        starts_at = min(target.starts_at, now - timedelta(microseconds=1))
        ended = target.model_copy(update={"ends_at": now, "starts_at": starts_at})
        save_silences(path, [ended if s.id == target.id else s for s in _kept(silences, now)])
        return ended
