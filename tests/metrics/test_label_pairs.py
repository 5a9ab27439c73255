"""`label_pairs` (one type check for all labels, rule families key records with it) gives what
`label_value` gives label by label, missing and empty values included."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.span import EvalResult, LLMSpan
from metrics.series import LABELS, MISSING, label_pairs, label_value
from tests.flows.test_batched_steps import _records


@settings(max_examples=300)
@given(_records(), st.lists(st.sampled_from(LABELS), max_size=len(LABELS)))
def test_label_pairs_are_the_label_values(record: LLMSpan | EvalResult,
                                          names: list[str]) -> None:
    pairs = label_pairs(record, tuple(names))
    assert pairs == tuple((name, label_value(record, name)) for name in names)
    assert all(isinstance(value, str) for _, value in pairs)
    assert label_pairs(record, LABELS).count(("operation", MISSING)) == \
        (label_value(record, "operation") == MISSING)
