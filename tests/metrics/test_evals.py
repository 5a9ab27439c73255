"""Evaluation categories: which metric an evaluation feeds, its value and its verdict."""

from __future__ import annotations

import math

import pytest

from ingest.span import EvalScore
from metrics.evals import DEFAULT_CATEGORIES, EvalCategories

cats = DEFAULT_CATEGORIES


@pytest.mark.parametrize(("name", "category"), [
    ("quality", "quality"), ("Relevance", "quality"), ("deepeval.answer_relevancy", "quality"),
    ("faithfulness", "groundedness"), ("ragas.faithfulness", "groundedness"),
    ("hallucination", "groundedness"), ("toxicity", "safety"), ("prompt_injection", "safety"),
    ("heuristic.json_schema", "heuristic"), ("format_check", "heuristic"),
    ("json_valid", "heuristic"), ("regex_match", "heuristic"), ("custom_metric", None),
])
def test_category_of(name: str, category: str | None) -> None:
    assert cats.category_of(name) == category


@pytest.mark.parametrize(("score", "value", "passed"), [
    (EvalScore("relevance", score=0.8), 0.8, True),
    (EvalScore("relevance", label="fail"), 0.0, False),
    (EvalScore("hallucination", score=0.9), pytest.approx(0.1), False),  # higher is worse
    (EvalScore("hallucination", label="hallucinated"), 0.0, False),
    (EvalScore("faithfulness", label="factual"), 1.0, True),
    (EvalScore("toxicity", score=0.2), pytest.approx(0.8), True),
    (EvalScore("toxicity", label="true"), 0.0, False),  # "toxic: true" is a failure
    (EvalScore("toxicity", label="toxic"), 0.0, False),
    (EvalScore("safety", label="unsafe"), 0.0, False),
    (EvalScore("safety", score=0.4), 0.4, False),  # below the pass threshold
    (EvalScore("json_valid", label="true"), 1.0, True),
    (EvalScore("json_valid", label="weird"), None, None),  # undecidable
    (EvalScore("safety", score=float("nan")), float("nan"), None),
])
def test_value_and_verdict(score: EvalScore, value: object, passed: bool | None) -> None:
    got = cats.value_of(score)
    if isinstance(value, float) and math.isnan(value):
        assert got is not None and math.isnan(got)
    else:
        assert got == value
    assert cats.passed(score) is passed


def test_pass_threshold_is_validated() -> None:
    with pytest.raises(ValueError, match=r"pass_threshold must be within \[0, 1\], got 2"):
        EvalCategories(pass_threshold=2)


def test_categories_are_configurable() -> None:
    custom = EvalCategories(quality=frozenset({"my_judge"}))
    assert custom.category_of("my_judge") == "quality"
    assert custom.category_of("relevance") is None
