"""alerts.toml as immutable models: receivers, tiers, rules and inhibition (shape only).

In: the parsed TOML document. Out: a `RulesConfig`. The models check shape (types, ranges,
durations, enums, the syntax of conditions, matchers and templates); `rules.validate` checks
references (metrics, labels, detectors, receivers, duplicate names) and `rules.load.load_rules`
runs both, so load through that rather than calling `model_validate` directly.

>>> Condition.parse("> 5%")
Condition(op='>', threshold=0.05, unit='%', text='> 5%')
>>> Condition.parse("< 500ms").threshold
0.5
>>> Condition.parse("> 60s").detector_params()
{'kind': 'threshold', 'op': '>', 'value': 60.0}
"""

from __future__ import annotations

import difflib
import json
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import time, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)
from pydantic_core import PydanticCustomError

import detectors
from detectors.params import parse_duration
from metrics.catalog import METRICS
from rules.records import AlertEvent, Labels
from rules.silences import Matcher, Matchers, matches_all

MINUTE = timedelta(minutes=1)
MAX_WINDOW = timedelta(days=7)
"""Longest `over`, `for` and `keep_firing_for`: the metric windows keep 7 days of views."""

MIN_SAMPLES_BY_UNIT: dict[str, int] = {"ratio": 50, "count": 0, "1/min": 0}
"""Default `min_samples` by metric unit. Rates need 50 requests, so one error among twenty
night-time requests (5%) cannot page; counts and traffic rates need none, because their value
is the sample itself and zero traffic is a signal. Other metrics (latency, tokens, cost,
scores) default to `MIN_SAMPLES_OTHER`."""
MIN_SAMPLES_OTHER = 20

KEEP_FIRING_FOR_TIER_1 = "5m"
"""Tier-1 default for `keep_firing_for` (against flapping pages); other tiers default to 0."""

TIER_TIMING: dict[int, dict[str, str]] = {
    1: {"group_wait": "30s", "group_interval": "5m", "repeat_interval": "30m"},
    2: {"group_wait": "1m", "group_interval": "15m", "repeat_interval": "4h"},
    3: {"group_wait": "5m", "group_interval": "1h", "repeat_interval": "24h"},
}
"""Default notification timing per tier (Alertmanager's meaning of each key)."""

DEFAULT_SUMMARY = "{rule}: {metric} is {value:.4g} ({detail})"
"""`summary` of a rule that sets none; `detail` is the detector's one-line explanation."""

ALERT_LABELS = ("rule", "tier")
"""Labels every alert carries besides its series and extra labels (for matchers and grouping)."""

_MODEL = ConfigDict(extra="forbid", frozen=True)
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*\Z")
_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CONDITION = re.compile(
    r"\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(%|ms|s|m|h)?\s*")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_CLOCK = re.compile(r"([01]\d|2[0-3]):([0-5]\d)\Z")


def show(value: object) -> str:
    """A value as the user wrote it in TOML, for messages (`"5 mins"`, `4`, `true`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    return json.dumps(value, default=str, ensure_ascii=False)


# --- conditions, durations, templates ---

@dataclass(frozen=True, slots=True)
class Condition:
    """`when = "> 0.05"`: operator and threshold in the metric's unit ("%" is divided by 100,
    time units are converted to seconds)."""

    op: Literal[">", ">=", "<", "<="]
    threshold: float
    unit: Literal["", "%", "time"]
    text: str

    @classmethod
    def parse(cls, text: str) -> Condition:
        match = _CONDITION.fullmatch(text)
        if match is None:
            raise ValueError(f"{show(text)} is not a condition; expected an operator (>, >=, "
                             f"<, <=) and a number, e.g. \"> 0.05\", \"> 5%\", \"> 60s\"")
        op, number, suffix = match.groups()
        value = float(number)
        if suffix == "%":
            return cls(op, value / 100, "%", text)  # type: ignore[arg-type]
        if suffix:
            return cls(op, value * _SECONDS[suffix], "time", text)  # type: ignore[arg-type]
        return cls(op, value, "", text)  # type: ignore[arg-type]

    def detector_params(self) -> dict[str, Any]:
        return {"kind": "threshold", "op": self.op, "value": self.threshold}


def _condition(raw: object) -> object:
    if isinstance(raw, str):
        return Condition.parse(raw)
    if raw is None or isinstance(raw, Condition):
        return raw
    raise ValueError(f"is {show(raw)}; expected a string such as \"> 0.05\"")


def _duration(raw: object) -> object:
    if isinstance(raw, timedelta):
        return raw
    if not isinstance(raw, str):
        raise ValueError(f"is {show(raw)}; expected a duration such as \"5m\"")
    try:
        return parse_duration(raw)
    except ValueError:
        raise ValueError(f"{show(raw)} is not a duration; expected e.g. 30s, 5m, 1h30m, "
                         f"7d") from None


def _whole_minutes(value: timedelta) -> timedelta:
    if value % MINUTE:
        raise ValueError(f"{show(_format(value))} is not a whole number of minutes; metrics "
                         f"are kept in 1-minute buckets, so use e.g. 1m, 5m, 1h")
    if value > MAX_WINDOW:
        raise ValueError(f"{show(_format(value))} is longer than 7d; the metric windows keep "
                         f"7 days")
    return value


def _format(value: timedelta) -> str:
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


Duration = Annotated[timedelta, BeforeValidator(_duration)]
MinuteDuration = Annotated[timedelta, BeforeValidator(_duration), AfterValidator(_whole_minutes)]


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return value


Window = Annotated[MinuteDuration, AfterValidator(_positive)]


def placeholders(template: str) -> list[tuple[str, str]]:
    """The `{name:spec}` fields of a template. Raises ValueError on unbalanced braces."""
    try:
        fields = [(name, spec or "") for _, name, spec, _ in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as exc:
        raise ValueError(f"is not a valid template ({exc}); write {{{{ and }}}} for literal "
                         f"braces") from None
    for name, _ in fields:
        if not name:
            raise ValueError("has an empty placeholder {}; name it, e.g. {value}")
    return fields


def _template(raw: str) -> str:
    placeholders(raw)
    return raw


Template = Annotated[StrictStr, AfterValidator(_template)]


class _Labels:
    __slots__ = ("_labels",)

    def __init__(self, labels: Mapping[str, str]) -> None:
        self._labels = labels

    def __getattr__(self, name: str) -> str:
        return self._labels.get(name, "")


class _Formatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> Any:
        return "n/a" if value is None else super().format_field(value, format_spec)


def render(template: str, *, rule: Rule, labels: Mapping[str, str], value: float | None,
           threshold: float | None = None, baseline: float | None = None,
           detail: str = "") -> str:
    """Fill a rule's `summary` or `runbook` (an absent value renders as "n/a")."""
    return _Formatter().format(
        template, rule=rule.name, tier=rule.tier, metric=rule.metric, over=_format(rule.over),
        value=value, threshold=threshold, baseline=baseline, detail=detail, quota=rule.quota,
        labels=_Labels(labels))


# --- names ---

def _name(raw: str) -> str:
    if not _NAME.match(raw):
        raise ValueError(f"{show(raw)} is not a valid name; expected lowercase letters, "
                         f"digits, - and _, e.g. \"error-rate-high\"")
    return raw


def _env_name(raw: str) -> str:
    if not _ENV_NAME.match(raw):
        raise ValueError(f"{show(raw)} is not an environment variable name; expected "
                         f"uppercase letters, digits and _, e.g. \"SPANWATCH_SLACK_WEBHOOK_URL\"")
    return raw


def _url(raw: str) -> str:
    if not raw.startswith(("http://", "https://")):
        raise ValueError(f"{show(raw)} is not an http(s) URL")
    return raw


@lru_cache(maxsize=1)
def _zones() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


def _zone(raw: str) -> str:
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(raw, _zones(), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"{show(raw)} is not an IANA time zone; expected e.g. UTC, "
                         f"Europe/Berlin, America/New_York{hint}") from None
    return raw


def _clock(raw: object) -> object:
    if isinstance(raw, time):
        return raw
    match = _CLOCK.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise ValueError(f"is {show(raw)}; expected a time of day \"HH:MM\", e.g. \"09:00\"")
    return time(int(match.group(1)), int(match.group(2)))


def _distinct(values: tuple[str, ...]) -> tuple[str, ...]:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"lists {show(repeated[0])} twice")
    return values


def _label_names(labels: dict[str, str]) -> dict[str, str]:
    for name in labels:
        if not _LABEL_NAME.match(name):
            raise ValueError(f"has {show(name)}, which is not a label name; expected "
                             f"letters, digits and _, e.g. \"team\"")
    return labels


Name = Annotated[StrictStr, AfterValidator(_name)]
EnvName = Annotated[StrictStr, AfterValidator(_env_name)]
Names = Annotated[tuple[StrictStr, ...], AfterValidator(_distinct)]


# --- receivers and tiers ---

class _Receiver(BaseModel):
    model_config = _MODEL

    url: Annotated[StrictStr, AfterValidator(_url)] | None = None
    """Overrides the API endpoint (gateways, proxies, tests)."""


class PagerDutyReceiver(_Receiver):
    """PagerDuty Events API v2; the routing key is read from the environment."""

    kind: Literal["pagerduty"]
    routing_key_env: EnvName = "SPANWATCH_PAGERDUTY_ROUTING_KEY"


class SlackReceiver(_Receiver):
    """An incoming webhook (`webhook_url_env`, the default) or a bot token plus `channel`."""

    kind: Literal["slack"]
    webhook_url_env: EnvName | None = None
    token_env: EnvName | None = None
    channel: StrictStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_webhook(cls, data: Any) -> Any:
        if isinstance(data, dict) and "webhook_url_env" not in data and "token_env" not in data:
            return {**data, "webhook_url_env": "SPANWATCH_SLACK_WEBHOOK_URL"}
        return data

    @model_validator(mode="after")
    def _one_credential(self) -> SlackReceiver:
        if self.webhook_url_env and self.token_env:
            raise PydanticCustomError("config", "set webhook_url_env or token_env, not both",
                                      {"key": "token_env"})
        if self.token_env and not self.channel:
            raise PydanticCustomError("config", "token_env needs a channel, e.g. channel = "
                                      "\"#llm-alerts\"", {"key": "token_env"})
        return self


class DigestReceiver(_Receiver):
    """Collects alerts and sends them once a day at `send_at` (local time) to `deliver_to`."""

    kind: Literal["digest"]
    send_at: Annotated[time, BeforeValidator(_clock)]
    timezone: Annotated[StrictStr, AfterValidator(_zone)] = "UTC"
    deliver_to: StrictStr


class ConsoleReceiver(_Receiver):
    """Prints notifications to stderr (local runs, demos)."""

    kind: Literal["console"]


class FileReceiver(_Receiver):
    """Appends notifications as JSON lines to `path`."""

    kind: Literal["file"]
    path: StrictStr


Receiver = Annotated[PagerDutyReceiver | SlackReceiver | DigestReceiver | ConsoleReceiver
                     | FileReceiver, Field(discriminator="kind")]
RECEIVER_MODELS: dict[str, type[_Receiver]] = {
    "pagerduty": PagerDutyReceiver, "slack": SlackReceiver, "digest": DigestReceiver,
    "console": ConsoleReceiver, "file": FileReceiver}


class Tier(BaseModel):
    """Where a tier's alerts go and how often (Alertmanager's route timing)."""

    model_config = _MODEL

    receivers: Annotated[Names, Field(min_length=1)]
    group_by: Names = ("rule",)
    """Alerts with equal values of these labels go out as one notification."""
    group_wait: Duration
    group_interval: Duration
    repeat_interval: Annotated[Duration, AfterValidator(_positive)]


class InhibitRule(BaseModel):
    """While an alert matching `source_matchers` fires, alerts matching `target_matchers` that
    agree on `equal` do not notify (an alert never inhibits itself). Matchers see the alert
    labels plus `rule` and `tier`. `equal` unset: the labels both alerts carry (at least one)
    have equal values, so a series alert covers alerts on the same or a narrower series and a
    provider-wide alert covers every alert with that provider. A label in `equal` must be on
    the source and equal on the target."""

    model_config = _MODEL

    source_matchers: Annotated[Matchers, Field(min_length=1)]
    target_matchers: Annotated[Matchers, Field(min_length=1)]
    equal: Names | None = None

    def inhibits(self, source: Mapping[str, str], target: Mapping[str, str]) -> bool:
        """Whether a firing alert with `source` labels mutes one with `target` labels (both
        with `rule` and `tier`, as `Rule.match_labels` gives them)."""
        if not (matches_all(self.source_matchers, source)
                and matches_all(self.target_matchers, target)):
            return False
        if self.equal is None:
            shared = (source.keys() & target.keys()) - set(ALERT_LABELS)
            return bool(shared) and all(source[name] == target[name] for name in shared)
        return all(name in source and source[name] == target.get(name) for name in self.equal)

    # The shape `rules.inhibition.Inhibitor` reads (`source`, `target`, `equal`,
    # `is_inhibiting`), so these rules can be handed to it as they are.
    @property
    def source(self) -> EventMatcher:
        return EventMatcher(self.source_matchers)

    @property
    def target(self) -> EventMatcher:
        return EventMatcher(self.target_matchers)

    def is_inhibiting(self, source: AlertEvent, target: AlertEvent) -> bool:
        """`inhibits` on two alert events; an alert never inhibits itself."""
        if source.fingerprint == target.fingerprint:
            return False
        return self.inhibits(_event_labels(source), _event_labels(target))


@dataclass(frozen=True, slots=True)
class EventMatcher:
    """Matchers applied to an `AlertEvent` (its labels plus `rule` and `tier`)."""

    matchers: tuple[Matcher, ...]

    def matches(self, event: AlertEvent) -> bool:
        return matches_all(self.matchers, _event_labels(event))


def _event_labels(event: AlertEvent) -> dict[str, str]:
    return {**dict(event.labels), "rule": event.rule, "tier": str(event.tier)}


DEFAULT_INHIBIT = (InhibitRule(source_matchers=(Matcher("tier", "=", "1"),),
                               target_matchers=(Matcher("tier", "=~", "2|3"),)),)
"""Without an `inhibit` key: a firing tier-1 alert mutes the tier-2/3 alerts of its series."""


# --- rules ---

class Rule(BaseModel):
    """One alert rule: a metric per series, a `when` threshold or a `detector`, and timing."""

    model_config = _MODEL

    name: Name
    tier: Literal[1, 2, 3]
    metric: StrictStr
    group_by: Names = ()
    filters: Matchers = ()
    over: Window = MINUTE
    when: Annotated[Condition | None, BeforeValidator(_condition)] = None
    detector: dict[str, Any] | None = None
    across: StrictStr | None = None
    quota: Annotated[StrictFloat | StrictInt, Field(gt=0)] | None = None
    min_samples: Annotated[StrictInt, Field(ge=0)]
    for_: MinuteDuration = Field(default=timedelta(0), alias="for")
    keep_firing_for: MinuteDuration
    summary: Template = DEFAULT_SUMMARY
    runbook: Annotated[Template, Field(min_length=1)]
    labels: Annotated[dict[StrictStr, StrictStr], AfterValidator(_label_names)] = Field(
        default_factory=dict)
    rebaseline_on: Names = ()
    on_missing_data: Literal["ignore", "alert"] = "ignore"

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "keep_firing_for" not in data:
            data["keep_firing_for"] = KEEP_FIRING_FOR_TIER_1 if data.get("tier") == 1 else "0s"
        if "min_samples" not in data:
            data["min_samples"] = default_min_samples(data.get("metric"))
        return data

    @model_validator(mode="after")
    def _one_condition(self) -> Rule:
        problem = condition_problem(self.when is not None, self.detector)
        if problem is not None:
            raise PydanticCustomError("config", problem[1], {"key": problem[0]})
        return self

    def detector_params(self) -> dict[str, Any]:
        """The detector table to build: the `detector` table, or a threshold for `when`."""
        if self.when is not None:
            return self.when.detector_params()
        return dict(self.detector or {})

    def value_of(self, metric_value: float) -> float:
        """What the condition or detector sees: the metric, or its share of `quota`."""
        return metric_value / self.quota if self.quota is not None else metric_value

    def build_detector(self) -> detectors.Detector[Any]:
        """A fresh detector for one series of this rule."""
        return detectors.build(self.detector_params())

    def selects(self, labels: Mapping[str, str]) -> bool:
        """Whether a record with these labels passes the rule's `filters`."""
        return matches_all(self.filters, labels)

    def alert_labels(self, series: Mapping[str, str] | Labels) -> Labels:
        """Labels of an alert instance: the series labels plus the rule's extra labels."""
        return tuple(sorted({**dict(series), **self.labels}.items()))

    def match_labels(self, series: Mapping[str, str] | Labels) -> dict[str, str]:
        """Labels that matchers (inhibition, silences) see: alert labels, `rule` and `tier`."""
        return {**dict(self.alert_labels(series)), "rule": self.name, "tier": str(self.tier)}


def condition_problem(has_when: bool, detector: object) -> tuple[str, str] | None:
    """(key, message) when a rule has both or neither of `when` and `detector`, or a detector
    table without a kind. The reference pass asks too, so this is reported even when other keys
    of the rule are broken (pydantic skips model validators then)."""
    if has_when and detector is not None:
        return "detector", "set either when or detector, not both"
    if not has_when and detector is None:
        return "name", ("needs a condition: set when (e.g. when = \"> 0.05\") or detector "
                        "(e.g. detector = { kind = \"zscore\" })")
    if isinstance(detector, dict) and not isinstance(detector.get("kind"), str):
        return "detector", (f"detector.kind is required; expected one of "
                            f"{', '.join(detectors.kinds())}")
    return None


def default_min_samples(metric: object) -> int:
    """`min_samples` when a rule sets none, from the metric's unit (see MIN_SAMPLES_BY_UNIT)."""
    info = METRICS.get(metric) if isinstance(metric, str) else None
    return MIN_SAMPLES_OTHER if info is None else MIN_SAMPLES_BY_UNIT.get(info.unit,
                                                                           MIN_SAMPLES_OTHER)


def _tier_keys(raw: Any) -> Any:
    if not isinstance(raw, dict):
        return raw
    tiers: dict[int | str, Any] = {}
    for key, table in raw.items():
        # An unknown key stays a string, which the Literal key type rejects; its table gets
        # tier-1 timing so that only the key and real mistakes in the table are reported.
        number = int(key) if key in ("1", "2", "3") else None
        timing = TIER_TIMING[number or 1]
        tiers[number or key] = {**timing, **table} if isinstance(table, dict) else table
    return tiers


class RulesConfig(BaseModel):
    """The whole alerts.toml."""

    model_config = _MODEL

    receivers: dict[StrictStr, Receiver]
    tiers: Annotated[dict[Literal[1, 2, 3], Tier], BeforeValidator(_tier_keys)]
    rules: tuple[Rule, ...] = ()
    inhibit: tuple[InhibitRule, ...] = DEFAULT_INHIBIT

    def rule(self, name: str) -> Rule:
        """The rule called `name` (KeyError if there is none)."""
        for rule in self.rules:
            if rule.name == name:
                return rule
        raise KeyError(name)

    def receivers_of(self, tier: Literal[1, 2, 3]) -> dict[str, Receiver]:
        """The receivers a tier notifies, by name."""
        return {name: self.receivers[name] for name in self.tiers[tier].receivers}
