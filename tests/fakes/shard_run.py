"""The window stage without Bytewax, minute by minute: records into one `ShardWindows` under
every family of a config, minutes closed behind the traffic's spill, and evaluated."""

from __future__ import annotations

from collections.abc import Iterable

from ingest.span import EvalResult, LLMSpan
from metrics.shard import ShardWindows
from metrics.windows import ClosedMinute, WindowConfig
from rules.config import RulesConfig
from rules.evaluate import RuleEvaluator
from rules.families import families
from rules.records import Evaluation
from tests.fakes.traffic import MAX_SPILL_NS


class ShardRun:
    def __init__(self, config: RulesConfig) -> None:
        self.keys_of = [family.key_of for family in families(config)]
        self.shard = ShardWindows(WindowConfig())
        self.evaluator = RuleEvaluator(config)
        """Replaceable between minutes (e.g. by a pickled copy, as recovery does)."""

    def minute(self, minute: int, records: Iterable[LLMSpan | EvalResult]) -> list[Evaluation]:
        """Add one generated minute's records, close what the spill allows, evaluate it."""
        for record in records:
            for key_of in self.keys_of:
                key = key_of(record)
                if key is not None:
                    self.shard.add(key, record)
        by_minute: dict[int, list[ClosedMinute]] = {}
        for closed in self.shard.close_until(minute - MAX_SPILL_NS):
            by_minute.setdefault(closed.minute_start_unix_ns, []).append(closed)
        out: list[Evaluation] = []
        for start in sorted(by_minute):
            out.extend(self.evaluator.evaluate(by_minute[start], self.shard))
        return out
