"""Memory per active series of the window stage, with every metric and full 7-day rollups.

For each traffic class (requests per minute) one template series is driven through 8 days of
realistic traffic with the real code (records folded, every minute closed, hours and days
rolled up). N series are then restored from pickled copies of those snapshots, as recovery
would (each series owns its blobs), in a realistic mix of classes, and the memory they hold is
measured with tracemalloc and, in another fresh process without tracemalloc (whose own
records would count), as peak RSS; the median of several runs is reported.

    .venv/bin/python bench/memory_per_series.py --series 1000 10000 --runs 5
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import multiprocessing
import pickle
import random
import statistics
import time
import tracemalloc
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

from ingest.span import EvalResult, EvalScore, LLMSpan, TraceContext
from metrics.bucket import MINUTE_NS, Bucket
from metrics.bucket_state import pack
from metrics.catalog import METRICS, compute
from metrics.windows import DAY_NS, SeriesWindows, SeriesWindowsState, WindowConfig

T0 = 1_699_920_000 * 10**9  # a UTC midnight
DAYS = 8
# requests per minute -> share of series; most series are small, a few carry the traffic
MIX = {0.2: 0.5, 2.0: 0.35, 20.0: 0.15}


def _traffic(rate_per_min: float, rng: random.Random) -> Iterator[LLMSpan | EvalResult]:
    """A support-bot series: root request, retrieval (half), llm call, some evals, in order."""
    t = T0
    sessions = [f"sess-{i}" for i in range(max(3, int(rate_per_min * 6)))]
    end = T0 + DAYS * DAY_NS
    while True:
        t += int(rng.expovariate(rate_per_min) * MINUTE_NS)
        if t >= end:
            return
        trace = f"{rng.getrandbits(128):032x}"
        session = rng.choice(sessions)
        if rng.random() < 0.02:
            sessions[sessions.index(session)] = f"sess-{rng.getrandbits(32)}"
        ctx = TraceContext(service="support-bot", environment="prod", app_version="2.14.1",
                           prompt_template_version=rng.choice(["support-v7", "support-v8"]),
                           session_id=session, user_segment="pro", endpoint="/chat")
        llm_s = rng.lognormvariate(0.6, 0.5)
        out = max(1, int(rng.lognormvariate(5.0, 0.7)))
        inp = max(1, int(rng.lognormvariate(7.0, 0.6)))
        start = t
        if rng.random() < 0.5:
            r_ns = int(rng.lognormvariate(-2.5, 0.4) * 1e9)
            yield LLMSpan(trace_id=trace, span_id="r", parent_span_id="root", kind="retrieval",
                          name="retrieve", start_unix_ns=start, end_unix_ns=start + r_ns,
                          context=ctx)
            start += r_ns
        error = rng.random() < 0.02
        llm_end = start + int(llm_s * 1e9)
        yield LLMSpan(
            trace_id=trace, span_id="l", parent_span_id="root", kind="llm", name="chat",
            start_unix_ns=start, end_unix_ns=llm_end, context=ctx, operation="chat",
            provider="openai", request_model="gpt-4o-mini", input_tokens=inp,
            output_tokens=None if error else out,
            time_to_first_token_s=None if error else llm_s * rng.uniform(0.1, 0.4),
            finish_reasons=() if error else (("length",) if rng.random() < 0.03 else ("stop",)),
            is_error=error, error_kind="rate_limit" if error else None,
            is_refusal=rng.random() < 0.01, is_cache_hit=rng.random() < 0.35,
            feedback=rng.choice(["positive", "negative"]) if rng.random() < 0.05 else None,
            is_regenerated=rng.random() < 0.04,
            cost_usd=(inp * 0.15 + out * 0.6) / 1e6,
            evals=(EvalScore("heuristic.json_valid", label="pass"),))
        yield LLMSpan(trace_id=trace, span_id="root", parent_span_id=None, kind="request",
                      name="POST /chat", start_unix_ns=t - 5_000_000,
                      end_unix_ns=llm_end + 3_000_000, context=ctx)
        if rng.random() < 0.3:
            for name in ("relevance", "faithfulness"):
                yield EvalResult(trace_id=trace, span_id="l", at_unix_ns=llm_end + 2 * 10**9,
                                 score=EvalScore(name, score=rng.betavariate(8, 2)),
                                 context=ctx, model="gpt-4o-mini")


def build_template(rate_per_min: float, seed: int) -> tuple[SeriesWindowsState, dict[str, float]]:
    """Drive one series through 8 days with the real code; return its snapshot and figures."""
    rng = random.Random(seed)
    windows = SeriesWindows((("service", "support-bot"), ("model", "gpt-4o-mini")),
                            WindowConfig(retire_after=timedelta(days=30)))
    records = sorted(_traffic(rate_per_min, rng),
                     key=lambda r: r.end_unix_ns if isinstance(r, LLMSpan) else r.at_unix_ns)
    closed_minute = T0
    started = time.perf_counter()
    minute_buckets: list[int] = []
    for record in records:
        event = record.end_unix_ns if isinstance(record, LLMSpan) else record.at_unix_ns
        while closed_minute + MINUTE_NS <= event - 30 * 10**9:  # 30 s lateness
            closed_minute += MINUTE_NS
            for c in windows.close_until(closed_minute):
                if not c.is_empty:
                    minute_buckets.append(len(pickle.dumps(c.bucket.to_state(), protocol=5)))
        windows.add(record)
    drive_s = time.perf_counter() - started
    state = windows.snapshot()
    end = windows.closed_until_unix_ns or T0
    figures = {
        "records": len(records),
        "drive_s": drive_s,
        "bucket_pickled_B": statistics.median(minute_buckets) if minute_buckets else 0,
        "minute_blob_B": _median_blob(state.minutes.entries),
        "hour_blob_B": _median_blob(state.hours.entries),
        "day_blob_B": _median_blob(state.days.entries),
        "snapshot_pickled_B": len(pickle.dumps(state, protocol=5)),
    }
    for label, over in (("view_1h_ms", timedelta(hours=1)), ("view_1d_ms", timedelta(days=1)),
                        ("view_7d_ms", timedelta(days=7))):
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            view = windows.view(over, end)
            for metric in METRICS:
                compute(metric, view, over)
            timings.append((time.perf_counter() - started) * 1e3)
        figures[label] = statistics.median(timings)
    return state, figures


def _median_blob(entries: tuple[tuple[int, bytes], ...]) -> float:
    return statistics.median(len(blob) for _, blob in entries) if entries else 0.0


def _status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def measure(states: dict[float, bytes], n: int, seed: int) -> tuple[float, float]:
    """Bytes per series (tracemalloc, peak RSS) for n series restored in the MIX proportions,
    each in a fresh process so the RSS delta is not hidden by memory freed earlier, and the
    RSS not inflated by tracemalloc's records (about a third more)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        traced = pool.apply(_measure_here, (states, n, seed, True))
    with context.Pool(1) as pool:
        rss = pool.apply(_measure_here, (states, n, seed, False))
    return traced, rss


def _measure_here(states: dict[float, bytes], n: int, seed: int, traced: bool) -> float:
    rng = random.Random(seed)
    rates = rng.choices(list(MIX), weights=list(MIX.values()), k=n)
    config = WindowConfig(retire_after=timedelta(days=30))
    gc.collect()
    rss_before = _status_kb("VmRSS") * 1024
    with contextlib.suppress(OSError):  # reset the peak (VmHWM) to the current RSS
        Path("/proc/self/clear_refs").write_text("5")
    if traced:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    series: dict[tuple[tuple[str, str], ...], SeriesWindows] = {}
    for i, rate in enumerate(rates):
        state: SeriesWindowsState = pickle.loads(states[rate])  # noqa: S301  # our own bytes
        key = (("service", f"svc-{i % 97}"), ("model", f"model-{i}"))
        series[key] = SeriesWindows.restore(dataclasses.replace(state, key=key), config)
    gc.collect()
    if traced:
        used = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return used / n
    peak = max(_status_kb("VmHWM"), _status_kb("VmRSS")) * 1024
    return (peak - rss_before) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    print(f"templates: {DAYS} days of traffic per class, every minute closed, 7-day rollups")
    header = ("req/min", "records", "drive s", "bucket B", "minute B", "hour B", "day B",
              "snapshot KB", "1h view ms", "1d view ms", "7d view ms")
    print(" | ".join(header))
    states: dict[float, bytes] = {}
    for rate in MIX:
        state, f = build_template(rate, seed=int(rate * 10))
        states[rate] = pickle.dumps(state, protocol=5)
        print(" | ".join([f"{rate:g}", f"{f['records']:.0f}", f"{f['drive_s']:.1f}",
                          f"{f['bucket_pickled_B']:.0f}", f"{f['minute_blob_B']:.0f}",
                          f"{f['hour_blob_B']:.0f}", f"{f['day_blob_B']:.0f}",
                          f"{f['snapshot_pickled_B'] / 1024:.1f}", f"{f['view_1h_ms']:.2f}",
                          f"{f['view_1d_ms']:.2f}", f"{f['view_7d_ms']:.2f}"]))
    print(f"\nmix (share of series per req/min): {MIX}")
    print("memory of restored series (each owns its blobs, as after recovery):")
    for rate in MIX:
        only = dict.fromkeys(MIX, states[rate])
        results = [measure(only, 1000, seed) for seed in range(args.runs)]
        print(f"1000 series of {rate:g} req/min: "
              f"{statistics.median(r[0] for r in results) / 1024:.1f} KB/series (tracemalloc), "
              f"{statistics.median(r[1] for r in results) / 1024:.1f} KB/series (peak RSS)")
    for n in args.series:
        runs = [measure(states, n, seed) for seed in range(args.runs)]
        traced = statistics.median(r[0] for r in runs)
        rss = statistics.median(r[1] for r in runs)
        print(f"{n} series, mix: {traced / 1024:.1f} KB/series (tracemalloc), "
              f"{rss / 1024:.1f} KB/series (peak RSS); median of {args.runs} runs")
    empty = Bucket()
    print(f"\nempty bucket pickled: {len(pickle.dumps(empty.to_state(), protocol=5))} B, "
          f"packed: {len(pack(empty.to_state()))} B")


if __name__ == "__main__":
    main()
