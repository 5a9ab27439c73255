"""Validation of an alerts.toml document in two passes: shape, then references.

In: the parsed TOML document (plain dicts and lists). Out: the `RulesConfig`, or `Problem`s
that say where (a path into the document) and what, with a fix when one is obvious. Both passes
always run, so one `spanwatch check` reports every mistake; `rules.load` adds file and line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

import detectors
from metrics.catalog import METRICS
from metrics.series import LABELS
from rules.config import (
    ALERT_LABELS,
    RECEIVER_MODELS,
    Condition,
    InhibitRule,
    Rule,
    RulesConfig,
    Tier,
    condition_problem,
    placeholders,
    show,
)
from rules.silences import parse_matchers

Loc = tuple[str | int, ...]
_SECTIONS = ("receivers", "tiers", "rules", "inhibit")
_NUMERIC_FIELDS = {"value", "threshold", "baseline", "quota"}
_PERCENT_UNITS = {"ratio", "score 0-1"}
_TIME_UNITS = {"s", "s/token"}
_GROUPED_KINDS = ("novelty", "two_sample")
_TYPES = {"string": "a string", "int": "a whole number", "float": "a number",
          "bool": "true or false", "tuple": "a list", "list": "a list", "dict": "a table",
          "model": "a table", "model_attributes": "a table", "time": "a time \"HH:MM\""}
_SECRET_HINTS = {
    "routing_key": "secrets are read from the environment: set routing_key_env to the name of "
                   "the variable that holds it",
    "webhook_url": "secrets are read from the environment: set webhook_url_env to the name of "
                   "the variable that holds it",
    "token": "secrets are read from the environment: set token_env to the name of the "
             "variable that holds it",
}
_DETECTOR_PARAM = re.compile(r"[a-z_]+ (is|must|has) ")
_UNKNOWN_PARAMS = re.compile(r"unknown parameter\(s\) (.+?); expected (.+)")


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake: `loc` is the path in the document (for the line), `message` names the
    key, the bad value, what is allowed and a fix; `phase` 1 is shape, 2 references."""

    loc: Loc
    message: str
    phase: int


def check_document(doc: dict[str, Any]) -> tuple[RulesConfig | None, list[Problem]]:
    """Both passes over `doc`; the config only when there is no problem at all."""
    config: RulesConfig | None = None
    try:
        config = RulesConfig.model_validate(doc)
        shape: list[Problem] = []
    except ValidationError as exc:
        shape = [_from_pydantic(error, doc) for error in exc.errors()]
    problems = list(dict.fromkeys(shape + References(doc).check()))  # both passes may ask
    return (None if problems else config), problems


def section(loc: Loc, doc: dict[str, Any]) -> str:
    """`rules[3] "cost-spike"`, `receivers.slack`, `tiers.1`, `inhibit[0]`, or "" (top level,
    or a problem with the whole table, whose message names it)."""
    if len(loc) < 3 or loc[0] not in _SECTIONS:
        return ""
    head, key = loc[0], loc[1]
    if head in ("receivers", "tiers"):
        return f"{head}.{key}"
    name = _at(doc, (head, key, "name"))
    return f"{head}[{key}] {show(name)}" if isinstance(name, str) else f"{head}[{key}]"


def _at(doc: Any, loc: Loc) -> Any:
    for part in loc:
        is_key = isinstance(doc, dict) and part in doc
        is_index = isinstance(doc, list) and isinstance(part, int) and part < len(doc)
        if not (is_key or is_index):
            return None
        doc = doc[part]
    return doc


def _field(loc: Sequence[str | int]) -> str:
    text = ""
    for index, part in enumerate(loc):
        if isinstance(part, int) and not (index == 1 and loc[0] == "tiers"):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _hint(value: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(allowed), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def unknown(what: str, value: str, allowed: Sequence[str], *, list_all: bool = True) -> str:
    """`<what> "value" is unknown; expected one of a, b; did you mean a?` (with `list_all`
    false, the list is left out when there is a close match)."""
    hint = _hint(value, allowed)
    expected = f"; expected one of {', '.join(allowed)}" if list_all or not hint else ""
    return f"{what} {show(value)} is unknown{expected}{hint}"


# --- pass 1: shape (pydantic errors in words) ---

def _model_at(loc: Loc, doc: dict[str, Any]) -> type[BaseModel]:
    if len(loc) <= 1:
        return RulesConfig
    if loc[0] == "receivers":
        kind = _at(doc, (*loc[:2], "kind"))
        return RECEIVER_MODELS.get(kind, RulesConfig) if isinstance(kind, str) else RulesConfig
    models: dict[str, type[BaseModel]] = {"tiers": Tier, "rules": Rule, "inhibit": InhibitRule}
    return models.get(str(loc[0]), RulesConfig)


def _from_pydantic(error: ErrorDetails, doc: dict[str, Any]) -> Problem:
    loc: list[str | int] = list(error["loc"])
    if len(loc) >= 3 and loc[0] == "receivers" and loc[2] in RECEIVER_MODELS:
        del loc[2]  # pydantic puts the discriminator's tag in the path
    if len(loc) >= 2 and loc[0] == "tiers":
        loc[1] = str(loc[1])  # tier tables are keyed 1, 2, 3 once parsed
    kind, ctx = error["type"], error.get("ctx", {})
    if loc and loc[-1] == "[key]":
        loc.pop()
        if len(loc) == 2 and loc[0] == "tiers" and kind == "literal_error":
            return Problem(tuple(loc), f"tier {show(error.get('input'))} is unknown; expected "
                                       f"1 (page), 2 (notify) or 3 (digest)", 1)
    depth = 2 if len(loc) > 2 and loc[0] in _SECTIONS else 0
    field = _field(loc[depth:])
    value = error.get("input")
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = [info.alias or name for name, info in _model_at(tuple(loc[:depth]),
                                                                 doc).model_fields.items()]
        where = f" in {_field(loc[depth:-1])}" if len(loc) > depth + 1 else ""
        fix = f"; {_SECRET_HINTS[key]}" if key in _SECRET_HINTS else _hint(key, allowed)
        text = f"unknown key {show(key)}{where}; expected one of {', '.join(allowed)}{fix}"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("kind")
        kinds = sorted(RECEIVER_MODELS)
        text = (unknown("kind", str(ctx["tag"]), kinds) if kind == "union_tag_invalid"
                else f"kind is required; expected one of {', '.join(kinds)}")
    elif kind == "missing":
        text = f"{field} is required"
    elif kind == "value_error":
        reason = str(ctx["error"])
        text = f"{field} {reason}" if field else reason
    elif kind == "config":
        if ctx.get("key") is not None:
            loc.append(ctx["key"])
        text = error["msg"]
    elif kind == "literal_error":
        text = f"{field} is {show(value)}; expected {str(ctx['expected']).replace(chr(39), '')}"
    elif kind == "too_short":
        text = f"{field} is empty; expected at least one entry"
    elif kind.endswith(("_type", "_parsing")) and kind.rsplit("_", 1)[0] in _TYPES:
        text = f"{field} is {show(value)}; expected {_TYPES[kind.rsplit('_', 1)[0]]}"
    elif kind in ("greater_than", "greater_than_equal"):
        bound = ctx.get("gt", ctx.get("ge"))
        text = f"{field} is {show(value)}; expected {'>' if 'gt' in ctx else '>='} {bound}"
    else:
        text = f"{field}: {error['msg'][0].lower()}{error['msg'][1:]}"
    return Problem(tuple(loc), text, 1)


# --- pass 2: references ---

class References:
    """Checks that need more than one key: names of metrics, labels, detectors, receivers."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        receivers = doc.get("receivers")
        self.receivers: dict[str, Any] = receivers if isinstance(receivers, dict) else {}
        tiers = doc.get("tiers")
        self.tiers: dict[str, Any] = tiers if isinstance(tiers, dict) else {}
        rules = doc.get("rules")
        self.rules: list[Any] = rules if isinstance(rules, list) else []
        extra = {name for rule in self.rules if isinstance(rule, dict)
                 and isinstance(rule.get("labels"), dict) for name in rule["labels"]}
        self.alert_labels = [*LABELS, *ALERT_LABELS, *sorted(extra - set(LABELS))]

    def add(self, loc: Loc, message: str) -> None:
        self.problems.append(Problem(loc, message, 2))

    def check(self) -> list[Problem]:
        for name, receiver in self.receivers.items():
            if isinstance(receiver, dict) and receiver.get("kind") == "digest":
                self._deliver_to(name, receiver.get("deliver_to"))
        for key, tier in self.tiers.items():
            if isinstance(tier, dict):
                self._names(("tiers", key, "receivers"), tier.get("receivers"), self._receiver)
                self._names(("tiers", key, "group_by"), tier.get("group_by"),
                            self._alert_label)
        seen: dict[str, int] = {}
        for index, rule in enumerate(self.rules):
            if isinstance(rule, dict):
                RuleReferences(self, index, rule).check(seen)
        inhibit = self.doc.get("inhibit")
        for index, entry in enumerate(inhibit if isinstance(inhibit, list) else []):
            if isinstance(entry, dict):
                self._inhibit(index, entry)
        return self.problems

    def _names(self, loc: Loc, values: Any, check: Callable[[Loc, str], None]) -> None:
        if isinstance(values, list):
            for index, value in enumerate(values):
                if isinstance(value, str):
                    check((*loc, index), value)

    def _receiver(self, loc: Loc, name: str) -> None:
        if name not in self.receivers:
            defined = ", ".join(sorted(self.receivers)) or "none"
            self.add(loc, f"{_field(loc[2:])} {show(name)} is not defined; defined receivers "
                          f"are {defined}{_hint(name, self.receivers)}")

    def _deliver_to(self, name: str, target: Any) -> None:
        loc = ("receivers", name, "deliver_to")
        if not isinstance(target, str):
            return
        if target not in self.receivers:
            self._receiver(loc, target)
        elif _at(self.receivers, (target, "kind")) == "digest":
            self.add(loc, f"deliver_to {show(target)} is a digest receiver; expected one that "
                          f"sends (slack, pagerduty, console, file)")

    def _alert_label(self, loc: Loc, name: str) -> None:
        if name not in self.alert_labels:
            self.add(loc, unknown(f"{_field(loc[2:])} label", name, self.alert_labels))

    def _inhibit(self, index: int, entry: dict[str, Any]) -> None:
        for key in ("source_matchers", "target_matchers"):
            try:
                matchers = parse_matchers(entry.get(key, []))
            except ValueError:
                continue  # reported by the shape pass
            for matcher in matchers:
                if matcher.name not in self.alert_labels:
                    self.add(("inhibit", index, key),
                             unknown(f"{key} label", matcher.name, self.alert_labels))
        self._names(("inhibit", index, "equal"), entry.get("equal"),
                    self._alert_label)


class RuleReferences:
    """The reference checks of one `[[rules]]` table."""

    def __init__(self, refs: References, index: int, rule: dict[str, Any]) -> None:
        self.refs, self.index, self.rule = refs, index, rule
        group_by = rule.get("group_by")
        self.group_by = [g for g in group_by if isinstance(g, str)] if isinstance(
            group_by, list) else []
        detector = rule.get("detector")
        self.detector = detector if isinstance(detector, dict) else None
        kind = self.detector.get("kind") if self.detector else None
        self.kind = kind if isinstance(kind, str) else None

    def add(self, key: Loc, message: str) -> None:
        self.refs.add(("rules", self.index, *key), message)

    def check(self, seen: dict[str, int]) -> None:
        rule = self.rule
        name, tier, metric = rule.get("name"), rule.get("tier"), rule.get("metric")
        problem = condition_problem("when" in rule, rule.get("detector"))
        if problem is not None:
            self.refs.problems.append(Problem(("rules", self.index, problem[0]), problem[1], 1))
        if isinstance(name, str):
            if name in seen:
                self.add(("name",), f"name {show(name)} is already used by rules[{seen[name]}]; "
                                   f"rule names must be unique")
            seen.setdefault(name, self.index)
        if isinstance(tier, int) and tier in (1, 2, 3) and str(tier) not in self.refs.tiers:
            self.add(("tier",), f"tier {tier} has no [tiers.{tier}] table; add one with its "
                                f"receivers")
        if isinstance(metric, str) and metric not in METRICS:
            self.add(("metric",), unknown("metric", metric, list(METRICS), list_all=False))
        for index, label in enumerate(self.group_by):
            self._label(("group_by", index), "group_by label", label)
        self._filters(rule.get("filters"))
        self._across(rule.get("across"))
        self._rebaseline(rule.get("rebaseline_on"))
        self._labels(rule.get("labels"))
        if self.detector is not None and self.kind is not None:
            self._detector(self.detector, self.kind)
        if isinstance(rule.get("when"), str) and isinstance(metric, str) and metric in METRICS:
            self._when(rule["when"], METRICS[metric].unit)
        for key in ("summary", "runbook"):
            if isinstance(rule.get(key), str):
                self._template(key, rule[key])

    def _label(self, key: Loc, what: str, name: str) -> bool:
        if name not in LABELS:
            self.add(key, unknown(what, name, LABELS))
            return False
        return True

    def _filters(self, raw: Any) -> None:
        try:
            matchers = parse_matchers(raw) if raw is not None else ()
        except ValueError:
            return  # reported by the shape pass
        for index, matcher in enumerate(matchers):
            key = ("filters", matcher.name if isinstance(raw, dict) else index)
            self._label(key, "filters label", matcher.name)

    def _across(self, across: Any) -> None:
        if self.kind in _GROUPED_KINDS and across is None:
            self.add(("detector", "kind"), f"detector.kind {show(self.kind)} compares the values "
                                           f"of a label; set across, e.g. across = "
                                           f"\"prompt_template_version\"")
        if not isinstance(across, str):
            return
        if self.kind not in _GROUPED_KINDS:
            self.add(("across",), f"across only applies to detector kinds "
                                  f"{' and '.join(_GROUPED_KINDS)}")
        elif self._label(("across",), "across label", across) and across in self.group_by:
            self.add(("across",), f"across {show(across)} is also in group_by; compare across "
                                  f"a label or group by it, not both")

    def _rebaseline(self, raw: Any) -> None:
        if not isinstance(raw, list) or not raw:
            return
        if self.detector is None:
            self.add(("rebaseline_on",), "rebaseline_on needs a detector; a fixed when "
                                         "threshold has no baseline")
        for index, label in enumerate(raw):
            if not isinstance(label, str):
                continue
            if self._label(("rebaseline_on", index), "rebaseline_on label", label) and (
                    label in self.group_by):
                self.add(("rebaseline_on", index),
                         f"rebaseline_on label {show(label)} is in group_by, so each value "
                         f"already has its own baseline; remove it from rebaseline_on")

    def _labels(self, raw: Any) -> None:
        if not isinstance(raw, dict):
            return
        for name in raw:
            if name in LABELS or name in ALERT_LABELS:
                self.add(("labels", name), f"labels.{name} would hide the {name} label every "
                                           f"alert carries; choose another name")

    def _detector(self, params: dict[str, Any], kind: str) -> None:
        if kind not in detectors.kinds():
            self.add(("detector", "kind"), unknown("detector.kind", kind, detectors.kinds()))
            return
        try:
            detectors.build(params)
        except (TypeError, OverflowError) as exc:  # a detector bug must not crash the check
            self.add(("detector",), f"detector: {kind} rejected these parameters: {exc}")
        except detectors.DetectorConfigError as exc:
            text = str(exc).removeprefix(f"detector {kind}: ")
            unknown_params = _UNKNOWN_PARAMS.fullmatch(text)
            if unknown_params:
                names = unknown_params.group(1).split(", ")
                allowed = unknown_params.group(2).split(", ")
                self.add(("detector", names[0]),
                         f"detector: {unknown('parameter', names[0], allowed)}")
                return
            param = text.split(" ", 1)[0]
            key = ("detector", param) if param in params else ("detector",)
            is_param = _DETECTOR_PARAM.match(text) is not None
            self.add(key, f"detector.{text}" if is_param else f"detector: {text}")

    def _when(self, text: str, unit: str) -> None:
        try:
            condition = Condition.parse(text)
        except ValueError:
            return  # reported by the shape pass
        metric, quota = self.rule["metric"], self.rule.get("quota")
        is_share = unit in _PERCENT_UNITS or quota is not None
        measured = "a share of its quota (0 to 1)" if quota is not None else f"in {unit}"
        if condition.unit == "time" and unit not in _TIME_UNITS:
            self.add(("when",), f"when {show(text)} has a time unit, but {metric} is measured "
                                f"{measured}; write a plain number")
        elif condition.unit == "%" and not is_share:
            self.add(("when",), f"when {show(text)} is a percentage, but {metric} is measured "
                                f"in {unit}; write a plain number")
        elif condition.unit == "" and is_share and not 0 <= condition.threshold <= 1:
            share = ("a share of its quota (0 to 1)" if quota is not None
                     else f"a {unit} between 0 and 1")
            self.add(("when",), f"when {show(text)} is outside 0 to 1, but {metric} is "
                                f"{share}; did you mean \"{condition.op} "
                                f"{condition.threshold:g}%\"?")

    def _allowed_placeholders(self) -> tuple[list[str], list[str]]:
        names = ["rule", "tier", "metric", "over", "value", "detail"]
        names += ["baseline"] if self.detector is not None else ["threshold"]
        if self.rule.get("quota") is not None:
            names.append("quota")
        labels = [*self.group_by]
        extra = self.rule.get("labels")
        labels += list(extra) if isinstance(extra, dict) else []
        across = self.rule.get("across")
        labels += [across] if isinstance(across, str) else []
        return names, labels

    def _template(self, key: str, template: str) -> None:
        try:
            fields = placeholders(template)
        except ValueError:
            return  # reported by the shape pass
        names, labels = self._allowed_placeholders()
        allowed = [*names, *(f"labels.{label}" for label in labels)]
        for name, spec in fields:
            shown = f"{key} placeholder {{{name}{':' + spec if spec else ''}}}"
            label = name.removeprefix("labels.") if name.startswith("labels.") else None
            if name in allowed:
                self._spec(key, shown, name, spec)
            elif name == "threshold" and self.detector is not None:
                self.add((key,), f"{shown} has no value in a detector rule; use {{baseline}}")
            elif name == "baseline" and self.detector is None:
                self.add((key,), f"{shown} has no value in a when rule; use {{threshold}}")
            elif label in LABELS:
                self.add((key,), f"{shown} is not a label of this alert; add {label} to "
                                 f"group_by or labels")
            else:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f"; did you mean {{{close[0]}}}?" if close else ""
                expected = ", ".join(f"{{{a}}}" for a in allowed)
                self.add((key,), f"{shown} is unknown; expected {expected}{hint}")

    def _spec(self, key: str, shown: str, name: str, spec: str) -> None:
        if not spec:
            return
        try:
            format(0.5 if name in _NUMERIC_FIELDS else "x", spec)
        except ValueError:
            self.add((key,), f"{shown} has an invalid format spec {show(spec)}; e.g. "
                             f"{{value:.1%}} or {{value:.3g}}")
