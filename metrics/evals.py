"""Evaluation categories for the window stage: which metric an evaluation feeds, and how.

In: an `EvalScore` (from a span's `eval.*` attributes or a separate `EvalResult`). Out: its
category (quality, groundedness, heuristic, safety or none), its 0..1 "higher is better" value
and its pass/fail verdict, from a configurable `EvalCategories` mapping of names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from ingest.normalise import eval_passed
from ingest.span import EvalScore

Category = Literal["quality", "groundedness", "heuristic", "safety"]

_PASS_WORDS = frozenset({"safe", "clean", "factual", "grounded", "faithful", "not_toxic",
                         "non_toxic", "not_detected", "none", "benign", "valid"})
_FAIL_WORDS = frozenset({"unsafe", "toxic", "hallucinated", "hallucination", "ungrounded",
                         "unfaithful", "detected", "flagged", "jailbreak", "injection",
                         "invalid", "harmful"})
_TRUE_WORDS = frozenset({"true", "yes", "1"})
_FALSE_WORDS = frozenset({"false", "no", "0"})


@dataclass(frozen=True, slots=True)
class EvalCategories:
    """Which evaluation names feed which metric.

    A name matches when it, or its last dotted part (`ragas.faithfulness` -> `faithfulness`),
    is in a set, compared lowercase; heuristic prefixes match the whole name. Names in
    `higher_is_worse` score the bad thing (a hallucination score of 0.9 means mostly made up):
    their scores are inverted (1 - score) and a bare true/false label means "detected".

    Quality and groundedness average the 0..1 value (a numeric score, else 1.0/0.0 from a pass
    or fail label); heuristic and safety count verdicts: a failing label, pass=false, or a
    (possibly inverted) score below `pass_threshold` is a failure.
    """

    quality: frozenset[str] = frozenset({
        "quality", "relevance", "helpfulness", "correctness", "answer_relevancy",
        "answer_relevance", "coherence", "fluency", "qa", "overall"})
    groundedness: frozenset[str] = frozenset({
        "groundedness", "faithfulness", "hallucination", "context_relevance",
        "context_relevancy", "context_precision", "context_recall"})
    safety: frozenset[str] = frozenset({
        "safety", "toxicity", "jailbreak", "pii", "prompt_injection", "moderation", "bias",
        "harmfulness"})
    heuristic: frozenset[str] = frozenset({"json_valid", "regex", "format", "schema",
                                           "length", "contains"})
    heuristic_prefixes: tuple[str, ...] = ("heuristic.", "heuristic_", "format", "json_valid",
                                           "regex")
    higher_is_worse: frozenset[str] = frozenset({
        "hallucination", "toxicity", "jailbreak", "pii", "prompt_injection", "bias",
        "harmfulness"})
    pass_threshold: float = 0.5
    _cache: dict[str, tuple[Category | None, bool]] = field(
        default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.pass_threshold <= 1.0:
            raise ValueError(
                f"EvalCategories.pass_threshold must be within [0, 1], got {self.pass_threshold}")

    def category_of(self, name: str) -> Category | None:
        """The metric family of evaluation `name`, None when it feeds none."""
        return self._lookup(name)[0]

    def value_of(self, score: EvalScore) -> float | None:
        """0..1, higher is better: the (inverted) score, else 1.0/0.0 from the verdict."""
        _, inverted = self._lookup(score.name)
        if score.score is not None:
            return 1.0 - score.score if inverted else score.score
        verdict = self.passed(score)
        return None if verdict is None else float(verdict)

    def passed(self, score: EvalScore) -> bool | None:
        """Pass/fail verdict, None when neither label nor score decides it."""
        _, inverted = self._lookup(score.name)
        if score.score is not None and not math.isfinite(score.score):
            score = EvalScore(name=score.name, score=None, label=score.label)  # NaN decides nothing
        label = score.label.strip().lower() if score.label else None
        if label in _PASS_WORDS:
            return True
        if label in _FAIL_WORDS:
            return False
        if inverted and label in _TRUE_WORDS | _FALSE_WORDS:
            return label in _FALSE_WORDS
        if inverted and score.score is not None:
            score = EvalScore(name=score.name, score=1.0 - score.score, label=score.label)
        return eval_passed(score, self.pass_threshold)

    def _lookup(self, name: str) -> tuple[Category | None, bool]:
        cached = self._cache.get(name)
        if cached is not None:
            return cached
        lowered = name.strip().lower()
        last = lowered.rsplit(".", 1)[-1]
        category: Category | None = None
        families: tuple[tuple[Category, frozenset[str]], ...] = (
            ("safety", self.safety), ("groundedness", self.groundedness),
            ("quality", self.quality), ("heuristic", self.heuristic))
        for candidate, names in families:
            if lowered in names or last in names:
                category = candidate
                break
        if category is None and lowered.startswith(self.heuristic_prefixes):
            category = "heuristic"
        inverted = lowered in self.higher_is_worse or last in self.higher_is_worse
        if len(self._cache) < 4096:  # names are a small set; the cap guards against junk
            self._cache[name] = (category, inverted)
        return category, inverted


DEFAULT_CATEGORIES = EvalCategories()
