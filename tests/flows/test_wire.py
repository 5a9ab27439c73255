"""A `Batch` that crosses processes travels in `flows.wire` form: what arrives must equal what was
sent (records, partials with folded buckets or plans, session touches, categories, progress),
and the batch is encoded only once however often Bytewax pickles it."""

from __future__ import annotations

import pickle
import time
from collections.abc import Sequence
from typing import Any

import pytest
from bytewax.connectors.kafka import KafkaSourceMessage

from bench.traffic import MINUTE_NS, generate
from flows import wire
from flows.pipeline import Preaggregator, decode_batch, preaggregate_batches
from flows.steps import Batch, Progress
from ingest.assembly import Record
from ingest.decode import Decoder
from ingest.span import EvalResult, EvalScore, LLMSpan, TraceContext
from metrics.bucket import SKETCHES, Bucket
from metrics.bucket_state import BucketState, fields_of
from metrics.evals import DEFAULT_CATEGORIES, EvalCategories
from metrics.partial import Partial, preaggregate_by
from metrics.series import series_key
from metrics.sessions import SessionTouch
from metrics.shard import ShardWindows
from metrics.sketch import QuantileSketch
from rules.load import load_rules
from spanwatch.settings import Settings

S = 1_000_000_000
T0 = 1_764_201_600 * S


@pytest.fixture(scope="module")
def bench_batches() -> tuple[list[Batch[Record]], list[Batch[Partial]]]:
    """The bench's OTLP traffic through the flow's decode and pre-aggregation steps."""
    traffic = generate(1200, (time.time_ns() // MINUTE_NS - 10) * MINUTE_NS, 500.0, services=6)
    items: list[Any] = [KafkaSourceMessage(key=None, value=m.value, topic="t", partition=0,
                                           offset=i) for i, m in enumerate(traffic.messages)]
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    decoded = decode_batch(Decoder(settings.ingest), items)
    records = [batch for _, batch in decoded]  # type: ignore[misc]
    rules = load_rules("alerts.toml")
    partials = [batch for _, batch in preaggregate_batches(Preaggregator(lambda: rules),
                                                           records)]
    return records, partials


def _crossed(batch: Batch[Any]) -> Batch[Any]:
    """`batch` as a worker in another process gets it: pickled twice (timely asks the length
    first), loaded once."""
    pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
    arrived = pickle.loads(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))  # noqa: S301
    assert isinstance(arrived, Batch)
    return arrived


def _states(partials: Sequence[Partial]) -> list[tuple[Any, ...]]:
    return [(p.key, p.minute_start_unix_ns, p.state, p.sessions, p.plans, p.categories,
             p.folded is None) for p in partials]


def test_record_batches_arrive_equal(bench_batches: tuple[list[Batch[Record]], list[Any]]
                                     ) -> None:
    records, _ = bench_batches
    assert any(isinstance(r, LLMSpan) and r.evals for b in records for r in b.items)
    for batch in records:
        arrived = _crossed(batch)
        assert arrived == batch
        assert [type(r) for r in arrived.items] == [type(r) for r in batch.items]
        assert arrived.progress == batch.progress


def test_partial_batches_arrive_equal(bench_batches: tuple[list[Any], list[Batch[Partial]]]
                                      ) -> None:
    _, partials = bench_batches
    every = [p for b in partials for p in b.items]
    assert any(p.folded is not None for p in every) and any(p.plans for p in every)
    assert any(p.sessions for p in every)
    for batch in partials:
        arrived = _crossed(batch)
        assert arrived.shard == batch.shard and arrived.progress == batch.progress
        assert _states(arrived.items) == _states(batch.items)
        assert all(p.categories is DEFAULT_CATEGORIES for p in arrived.items)


def _eval(trace: str, at: int, service: str) -> EvalResult:
    return EvalResult(trace_id=trace, span_id="c0", at_unix_ns=at,
                      score=EvalScore("helpfulness", 0.25, "ok"),
                      context=TraceContext(service=service, session_id="s1"), model="m")


def _span(trace: str, end: int) -> LLMSpan:
    return LLMSpan(trace_id=trace, span_id="c0", parent_span_id="root", kind="llm", name="chat",
                   start_unix_ns=end - S, end_unix_ns=end,
                   context=TraceContext(service="bot", session_id="s1", user_segment="pro"),
                   request_model="gpt-4o-mini", input_tokens=10, output_tokens=3, cost_usd=0.01,
                   finish_reasons=("stop",), evals=(EvalScore("quality", 0.9),))


def test_evaluations_and_other_categories_arrive_equal() -> None:
    """Standalone evaluations as records and as a partial's plans, with categories other than
    the default (sent along, rebuilt once)."""
    categories = EvalCategories(quality=frozenset({"helpfulness"}))
    records: list[Record] = [_eval("t1", T0 + S, "bot"), _span("t1", T0 + 2 * S),
                             _eval("t2", T0 + 3 * S, "rag")]
    arrived = _crossed(Batch("a1", records, (Progress("0-t", T0, T0 + S, "a1"),)))
    assert arrived == Batch("a1", records, (Progress("0-t", T0, T0 + S, "a1"),))

    partials = preaggregate_by(records, [lambda r: series_key(r, ("service",))],
                               categories=categories)
    many = preaggregate_by([_span(f"t{i}", T0 + i * S) for i in range(12)],
                           [lambda r: series_key(r, ("service",))], categories=categories)
    assert any(p.plans for p in partials) and any(p.folded is not None for p in many)
    sent = Batch("w3", [*partials, *many])
    got = _crossed(sent)
    assert _states(got.items) == _states(sent.items)
    sent_own = [p for p in sent.items if p.categories is not DEFAULT_CATEGORIES]
    got_own = [p for p in got.items if p.categories is not DEFAULT_CATEGORIES]
    assert sent_own and len(got_own) == len(sent_own)
    assert len({id(p.categories) for p in got_own}) == 1, "sent once, shared on arrival"


def test_a_batch_is_encoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    encode = wire.encode

    def counted(items: Sequence[Any]) -> bytes:
        calls.append(len(items))
        return encode(items)

    monkeypatch.setattr(wire, "encode", counted)
    batch = Batch("a2", [_span("t", T0)])
    first = pickle.dumps(batch)
    assert pickle.dumps(batch) == first
    assert calls == [1]


@pytest.mark.parametrize("items", [[], [1, "x", (2, 3)], [_span("t", T0), 7]])
def test_other_items_travel_as_they_are(items: list[Any]) -> None:
    assert wire.decode(wire.encode(items)) == items


def test_a_partial_with_plans_of_an_unknown_kind_travels_as_it_is() -> None:
    odd = Partial(key=(("service", "bot"),), minute_start_unix_ns=T0, folded=None,
                  plans=(_span("t", T0),))  # type: ignore[arg-type]
    got = wire.decode(wire.encode([odd]))
    assert got == [odd] and isinstance(got[0].plans[0], LLMSpan)


@pytest.mark.parametrize("cls", [LLMSpan, EvalResult, EvalScore, TraceContext, Partial,
                                 SessionTouch])
def test_rebuilt_classes_have_no_post_init(cls: type) -> None:
    """The receiver builds these with `fast_builder`, which would skip a `__post_init__`."""
    assert not hasattr(cls, "__post_init__")


def test_a_partial_is_sent_as_the_fields_of_its_state(
        bench_batches: tuple[list[Any], list[Batch[Partial]]]) -> None:
    """The wire form sends `Bucket.fields()` (which is `fields_of(to_state())` exactly), but
    with live sketches' bins as dicts rather than payloads."""
    folded = [p.folded for b in bench_batches[1] for p in b.items if p.folded is not None]
    assert folded
    for bucket in folded:
        fields = bucket.fields()
        assert fields == fields_of(bucket.to_state())
        sent = bucket.fields(live=True)
        at = BucketState.__slots__.index("sketches")
        assert sent[:at] == fields[:at] and sent[at + 1:] == fields[at + 1:]
        for state, live in zip(fields[at], sent[at], strict=True):
            assert (state is None) == (live is None)
            if live is not None:
                sketch = QuantileSketch()
                sketch.merge_live_parts(*live)
                assert sketch.state_fields() == state


def _fresh(batch: Batch[Partial]) -> Batch[Partial]:
    """A copy of a local batch with buckets of its own (the window stage takes them over)."""
    items = []
    for p in batch.items:
        bucket = None
        if p.folded is not None:
            bucket = Bucket()
            bucket.merge(p.folded)
        items.append(Partial(p.key, p.minute_start_unix_ns, bucket, p.sessions, p.plans,
                             p.categories))
    return Batch(batch.shard, items, batch.progress)


def _closed(batches: Sequence[Batch[Partial]]) -> list[tuple[Any, int, bytes, list[Any]]]:
    shard = ShardWindows()
    for batch in batches:
        for partial in batch.items:
            shard.add_partial(partial)
    end = max(p.minute_start_unix_ns for b in batches for p in b.items) + 3 * MINUTE_NS
    out = []
    for minute in shard.close_until(end):
        sketches = [minute.bucket.sketch(name) for name in SKETCHES]
        out.append((minute.key, minute.minute_start_unix_ns, minute.bucket.pack(),
                    [None if k is None else (k.count, k.quantile(0.5), k.quantile(0.99))
                     for k in sketches]))
    return out


def test_a_minute_of_received_partials_closes_as_one_of_local_partials() -> None:
    """Partial buckets cross processes as field tuples and their sketches are rebuilt live:
    minutes merged from received and local partials close with the packed bytes, counts and
    quantiles of the same minutes merged from local partials only."""
    traffic = generate(3000, T0, 500.0, services=3)
    items: list[Any] = [KafkaSourceMessage(key=None, value=m.value, topic="t", partition=0,
                                           offset=i) for i, m in enumerate(traffic.messages)]
    decoder = Decoder(Settings(_env_file=None).ingest)  # type: ignore[call-arg]
    preaggregator = Preaggregator(lambda: load_rules("alerts.toml"))
    batches: list[Batch[Partial]] = []
    for start in range(0, len(items), 4):  # a flow's source batches: many partials a minute
        records = [b for _, b in decode_batch(decoder, items[start:start + 4])]  # type: ignore[misc]
        batches.extend(b for _, b in preaggregate_batches(preaggregator, records))
    sent = [p.folded for b in batches for p in b.items if p.folded is not None]
    assert sum(k is not None for bucket in sent for k in bucket.sketches) > 100
    local = _closed([_fresh(b) for b in batches])
    mixed = _closed([_crossed(b) if i % 2 else _fresh(b) for i, b in enumerate(batches)])
    received = _closed([_crossed(b) for b in batches])
    assert len(local) > 10 and any(k is not None for m in local for k in m[3])
    assert mixed == local
    assert received == local
