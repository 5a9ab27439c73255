"""Detector quality on labeled synthetic series shaped like the public benchmarks.

Generates reproducible Yahoo-S5-A1..A4-like and NAB-like series (level, linear trend, daily and
weekly seasonality with amplitude drift, Gaussian / heavy-tailed / count noise with slowly
changing noise level) at 1-minute, 5-minute and 1-hour resolution, injects labeled anomalies
(spikes and dips of varying size, level shifts, ramps, short bursts, variance changes), and
generates anomaly-free twins. Every configured detector (built with `detectors.build`) and a
naive baseline (rolling mean +- 3 sigma of the last N points, learning everything) run over the
same series, score first, then learn.

Families (each at the resolutions in COMBOS; 70 days hourly, 14 days at 5 minutes, 7 days at
1 minute; every series starts at a random hour of the week):

- A1 (real-traffic-like): positive counts, a random 2-3 harmonic daily shape whose amplitude
  drifts, a weekend dip or bump (daytime shape and level), growth, 3-15% multiplicative jitter
  (heavy-tailed in 30% of series) plus Poisson noise; spikes, dips, level shifts, bursts.
- A2 (synthetic): one sinusoid, daily in half the series and of a random 6-72 h period in
  the other half, a trend, Gaussian noise (Student t in 20%); spikes and dips.
- A3 (synthetic): a trend plus 12 h, daily and weekly components (each present at random)
  with drifting amplitudes; spikes and dips.
- A4: A3's series with spikes, dips, level shifts, ramps (a gradual shift over 12-48
  points) and variance changes (3-6x the noise for 24-72 points).
- NAB (machine/app-metric-like): a wandering AR(1) level, a daily pattern in half the series,
  Gaussian or Student-t noise (half each); spikes, dips, shifts, bursts, variance changes,
  ramps.

In every family the noise level drifts slowly (a wave of 20-30%), and anomaly sizes are in
units of the local noise sd: spikes and dips log-uniform in 3.5-15, shifts 3-8, bursts of
3-12 points at 2.5-5, ramps 4-10.

Scoring is event-level, NAB-style: the first 15% of each series is a probation period (no
anomalies are injected there and nothing there is judged). A labeled window counts as
detected when any anomalous point falls inside it or up to `TOLERANCE` points after it; every
onset outside all (tolerance-extended) windows is a false positive. Precision is detected
windows / (detected windows + false positives). On anomaly-free series the false-alarm rate is
onsets per 1000 judged points. NAB is a NAB-like normalised score (standard weights: a
detected window +1, a missed one -1, a false onset -0.11; never alerting 0, perfect 100), and
"never" is the detector that never alerts, run like the others. Each number is the median
over seeds of the per-seed value; ALL is the median over seeds of the per-seed mean over
families and resolutions, POOLED counts every window and onset of every seed and family at
once (steadier for comparing configurations, since a series holds only a few anomalies).

    .venv/bin/python -m bench.detector_quality --quick
    .venv/bin/python -m bench.detector_quality --detector 'day={"seasonality": "hour_of_day"}'
    .venv/bin/python -m bench.detector_quality --heldout   # the held-out seeds, for the end

Seeds: the tuning seeds are 0..9 (`--quick`: 0..2); the held-out seeds 1000..1009 are only for
the final check. Generator parameters (amplitudes, periods, noise shape, trend, anomaly sizes)
are drawn per seed, so different seeds are different series, not re-noised copies.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import Pool
from typing import Any

import numpy as np

from detectors import build
from detectors.moments import Incident

STEP_S = {"1m": 60, "5m": 300, "1h": 3600}
LENGTH = {"1h": 1680, "5m": 4032, "1m": 10080}  # 70 days, 14 days, 7 days
COMBOS: tuple[tuple[str, str], ...] = (
    ("A1", "1h"), ("A1", "5m"), ("A1", "1m"),
    ("A2", "1h"),
    ("A3", "1h"), ("A3", "5m"),
    ("A4", "1h"), ("A4", "5m"),
    ("NAB", "5m"), ("NAB", "1m"),
)
FAMILY_INDEX = {"A1": 1, "A2": 2, "A3": 3, "A4": 4, "NAB": 5}
RESOLUTION_INDEX = {"1m": 1, "5m": 2, "1h": 3}
PROBATION = 0.15
TOLERANCE = 3
TUNING_SEEDS = tuple(range(10))
QUICK_SEEDS = tuple(range(3))
HELDOUT_SEEDS = tuple(range(1000, 1010))
START_S = datetime(2024, 1, 1, tzinfo=UTC).timestamp()  # a Monday
NAIVE = "naive"
NEVER = "never"
"""The detector that never alerts: recall 0, NAB-like score 0 by definition."""
NAB_FP_WEIGHT = 0.11
"""NAB's standard profile: a false positive costs 0.11 of a detected window (A_TP = 1,
A_FN = -1, A_FP = -0.11)."""


@dataclass(frozen=True, slots=True)
class Window:
    start: int
    end: int
    """Inclusive."""
    kind: str


@dataclass(frozen=True, slots=True)
class Series:
    family: str
    resolution: str
    seed: int
    clean: bool
    times_s: np.ndarray
    values: np.ndarray
    noise_sd: np.ndarray
    """The generator's noise sd per point (for diagnostics)."""
    windows: tuple[Window, ...]


# --- generator ----------------------------------------------------------------------------


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _shape(rng: np.random.Generator, hours: np.ndarray, period_h: float,
           harmonics: int) -> np.ndarray:
    """A random smooth periodic shape with `harmonics` harmonics, scaled to max |.| = 1."""
    total = np.zeros_like(hours)
    for k in range(1, harmonics + 1):
        total += rng.uniform(0.2, 1.0) / k * np.sin(
            2 * np.pi * k * hours / period_h + rng.uniform(0, 2 * np.pi))
    return np.asarray(total / max(float(np.max(np.abs(total))), 1e-9))


def _drift(rng: np.random.Generator, size: int, spread: float) -> np.ndarray:
    """A slow multiplicative drift from 1 to 1 +- spread over the series."""
    return np.asarray(1.0 + rng.uniform(-spread, spread) * np.linspace(0, 1, size))


def _slow_wave(rng: np.random.Generator, size: int, depth: float) -> np.ndarray:
    """Noise-level changes: a slow wave around 1 (one to three cycles per series)."""
    cycles = rng.uniform(1, 3)
    return np.asarray(1.0 + depth * np.sin(
        2 * np.pi * cycles * np.linspace(0, 1, size) + rng.uniform(0, 2 * np.pi)))


def _noise(rng: np.random.Generator, size: int, heavy: bool) -> np.ndarray:
    """Unit-scale noise: Gaussian, or Student t with 3..6 dof scaled to unit sd."""
    if not heavy:
        return rng.standard_normal(size)
    dof = rng.uniform(3.0, 6.0)
    return np.asarray(rng.standard_t(dof, size) / math.sqrt(dof / (dof - 2)))


@dataclass(slots=True)
class _Parts:
    """A series under construction: mean (signal) and noise, plus the local noise sd."""

    mean: np.ndarray
    noise: np.ndarray
    sd: np.ndarray
    multiplicative: bool = False
    windows: list[Window] = field(default_factory=list)


def _a1(rng: np.random.Generator, hours: np.ndarray) -> _Parts:
    """Real-traffic-like (Yahoo A1): positive counts, diurnal shape with a weekend dip or
    bump, growth, multiplicative jitter plus Poisson noise, sometimes heavy tails."""
    n = hours.size
    base = _log_uniform(rng, 20, 5000)
    daily = _shape(rng, hours, 24.0, int(rng.integers(2, 4)))
    amplitude = rng.uniform(0.2, 0.8) * _drift(rng, n, 0.3)
    weekend = ((hours // 24) % 7) >= 5
    factor = np.where(weekend, rng.uniform(0.5, 1.1), 1.0)
    growth = np.exp(rng.uniform(-0.2, 0.4) * np.linspace(0, 1, n))
    mean = base * growth * np.maximum(1 + amplitude * daily * factor, 0.05)
    mean = mean * np.where(weekend, rng.uniform(0.7, 1.05), 1.0)
    jitter = rng.uniform(0.03, 0.15) * _slow_wave(rng, n, 0.3)
    heavy = rng.random() < 0.3
    lognormal = np.exp(jitter * _noise(rng, n, heavy))
    values = rng.poisson(mean * lognormal).astype(float)
    sd = np.sqrt(mean + (jitter * mean) ** 2)
    return _Parts(mean, values - mean, sd, multiplicative=True)


def _a2(rng: np.random.Generator, hours: np.ndarray) -> _Parts:
    """Synthetic (Yahoo A2): one seasonality (daily, or a random period), trend, noise."""
    n = hours.size
    sd0 = _log_uniform(rng, 0.5, 50)
    period = 24.0 if rng.random() < 0.5 else rng.uniform(6.0, 72.0)
    amplitude = _log_uniform(rng, 1.0, 20.0) * sd0 * _drift(rng, n, 0.3)
    trend = rng.uniform(-10, 10) * sd0 * np.linspace(0, 1, n)
    level = rng.uniform(-5, 50) * sd0
    mean = level + trend + amplitude * _shape(rng, hours, period, 1)
    sd = sd0 * _slow_wave(rng, n, 0.2)
    return _Parts(mean, sd * _noise(rng, n, rng.random() < 0.2), sd)


def _a3(rng: np.random.Generator, hours: np.ndarray) -> _Parts:
    """Synthetic (Yahoo A3/A4): trend plus 12 h, daily and weekly seasonality, noise."""
    n = hours.size
    sd0 = _log_uniform(rng, 0.5, 50)
    mean = rng.uniform(-5, 50) * sd0 + rng.uniform(-15, 15) * sd0 * np.linspace(0, 1, n)
    for period, chance in ((12.0, 0.4), (24.0, 0.9), (168.0, 0.6)):
        if rng.random() < chance:
            amplitude = _log_uniform(rng, 0.5, 15.0) * sd0 * _drift(rng, n, 0.3)
            mean = mean + amplitude * _shape(rng, hours, period, int(rng.integers(1, 3)))
    sd = sd0 * _slow_wave(rng, n, 0.25)
    return _Parts(mean, sd * _noise(rng, n, rng.random() < 0.2), sd)


def _nab(rng: np.random.Generator, hours: np.ndarray) -> _Parts:
    """NAB-like machine/app metric: a wandering (AR(1)) level around an offset, sometimes a
    daily pattern, Gaussian or heavy-tailed noise whose level drifts."""
    n = hours.size
    sd0 = _log_uniform(rng, 0.5, 20)
    phi = 1 - _log_uniform(rng, 1e-3, 5e-2)
    wander_sd = rng.uniform(0.5, 4.0) * sd0
    steps = rng.standard_normal(n) * wander_sd * math.sqrt(1 - phi * phi)
    level = np.zeros(n)
    for i in range(1, n):
        level[i] = phi * level[i - 1] + steps[i]
    mean = rng.uniform(5, 100) * sd0 + level
    if rng.random() < 0.5:
        mean = mean + _log_uniform(rng, 1.0, 10.0) * sd0 * _shape(rng, hours, 24.0, 2)
    sd = sd0 * _slow_wave(rng, n, 0.3)
    return _Parts(mean, sd * _noise(rng, n, rng.random() < 0.5), sd)


_FAMILIES: dict[str, tuple[Callable[[np.random.Generator, np.ndarray], _Parts],
                           tuple[str, ...], tuple[int, int]]] = {
    "A1": (_a1, ("spike", "spike", "dip", "shift", "burst"), (2, 5)),
    "A2": (_a2, ("spike", "dip"), (3, 6)),
    "A3": (_a3, ("spike", "dip"), (3, 6)),
    "A4": (_a3, ("spike", "dip", "shift", "ramp", "variance"), (4, 7)),
    "NAB": (_nab, ("spike", "dip", "shift", "burst", "variance", "ramp"), (2, 4)),
}


def _inject(parts: _Parts, rng: np.random.Generator, kinds: Sequence[str],
            count: int) -> None:
    """Inject `count` anomalies after the probation period, at least n/20 points apart."""
    n = parts.mean.size
    gap = n // 20
    first, last = int(PROBATION * n) + 5, n - 80
    positions: list[int] = []
    for _ in range(200):
        if len(positions) == count:
            break
        p = int(rng.integers(first, last))
        if all(abs(p - q) >= gap for q in positions):
            positions.append(p)
    for p in sorted(positions):
        kind = str(rng.choice(list(kinds)))
        sign = -1.0 if kind == "dip" else float(rng.choice([-1.0, 1.0]))
        sd = float(parts.sd[p])
        if kind in ("spike", "dip"):
            size = _log_uniform(rng, 3.5, 15.0) * sd
            parts.mean[p] += sign * size
            parts.windows.append(Window(p, p, kind))
        elif kind == "shift":
            size = rng.uniform(3.0, 8.0)
            if parts.multiplicative:
                ratio = max(1 + sign * size * sd / float(parts.mean[p]), 0.2)
                parts.mean[p:] *= ratio
                parts.noise[p:] *= ratio
                parts.sd[p:] *= ratio
            else:
                parts.mean[p:] += sign * size * sd
            parts.windows.append(Window(p, p + 5, kind))
        elif kind == "burst":
            length = int(rng.integers(3, 13))
            parts.mean[p:p + length] += sign * rng.uniform(2.5, 5.0) * parts.sd[p:p + length]
            parts.windows.append(Window(p, p + length - 1, kind))
        elif kind == "ramp":
            length = int(rng.integers(12, 49))
            total = sign * rng.uniform(4.0, 10.0) * sd
            parts.mean[p:p + length] += total * np.arange(1, length + 1) / length
            parts.mean[p + length:] += total
            parts.windows.append(Window(p, p + length + 5, kind))
        else:  # variance
            length = int(rng.integers(24, 73))
            parts.noise[p:p + length] *= rng.uniform(3.0, 6.0)
            parts.windows.append(Window(p, p + length - 1, kind))


def generate(family: str, resolution: str, seed: int, *, clean: bool) -> Series:
    """One labeled series (or its anomaly-free twin: same family, different draw)."""
    rng = np.random.default_rng((seed, FAMILY_INDEX[family], RESOLUTION_INDEX[resolution],
                                 int(clean)))
    step = STEP_S[resolution]
    n = LENGTH[resolution]
    offset_h = float(rng.integers(0, 168))  # starts at a random hour of the week
    hours = offset_h + np.arange(n) * step / 3600.0
    make, kinds, (low, high) = _FAMILIES[family]
    parts = make(rng, hours)
    if not clean:
        _inject(parts, rng, kinds, int(rng.integers(low, high + 1)))
    values = parts.mean + parts.noise
    if parts.multiplicative:
        values = np.maximum(values, 0.0)
    times = START_S + hours * 3600.0
    return Series(family, resolution, seed, clean, times, values, parts.sd,
                  tuple(parts.windows))


# --- detectors ----------------------------------------------------------------------------


class NaiveBand:
    """Rolling mean +- sigma x sd of the last `window` points (all points learned), with the
    same onset rule as the detectors (an incident closes after 5 normal points)."""

    def __init__(self, window: int, sigma: float = 3.0) -> None:
        self.window, self.sigma = window, sigma
        self.recent: deque[float] = deque(maxlen=window)
        self.incident = Incident()

    def step(self, value: float) -> tuple[bool, bool]:
        anomalous = False
        if len(self.recent) == self.window:
            mean = statistics.fmean(self.recent)
            sd = statistics.pstdev(self.recent, mean)
            anomalous = abs(value - mean) > self.sigma * sd
        onset = self.incident.is_onset(anomalous)
        self.incident.observe(anomalous, cooldown=5)
        self.recent.append(value)
        return anomalous, onset


def run_detector(series: Series, params: dict[str, Any] | str | None,
                 naive_window: int) -> tuple[np.ndarray, np.ndarray]:
    """(anomalous, onset) flags per point; `params` None runs the naive band, NEVER nothing."""
    n = series.values.size
    anomalous = np.zeros(n, dtype=bool)
    onset = np.zeros(n, dtype=bool)
    if isinstance(params, str):  # NEVER
        return anomalous, onset
    if params is None:
        naive = NaiveBand(naive_window)
        for i, value in enumerate(series.values):
            anomalous[i], onset[i] = naive.step(float(value))
        return anomalous, onset
    detector = build(params)
    for i, (value, at_s) in enumerate(zip(series.values, series.times_s, strict=True)):
        at = datetime.fromtimestamp(float(at_s), UTC)
        score = detector.score(float(value), at)
        detector.learn(float(value), at)
        if score is not None:
            anomalous[i], onset[i] = score.is_anomalous, score.is_onset
    return anomalous, onset


# --- scoring ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    label: str
    family: str
    resolution: str
    seed: int
    clean: bool
    detected: tuple[tuple[str, bool], ...]
    """(kind, detected) per labeled window."""
    false_onsets: int
    judged: int
    seconds: float


def judge(series: Series, anomalous: np.ndarray, onset: np.ndarray) -> tuple[
        tuple[tuple[str, bool], ...], int, int]:
    n = series.values.size
    probation = int(PROBATION * n)
    covered = np.zeros(n, dtype=bool)
    detected = []
    for w in series.windows:
        stop = min(w.end + TOLERANCE + 1, n)
        covered[w.start:stop] = True
        detected.append((w.kind, bool(np.any(anomalous[w.start:stop]))))
    false_onsets = int(np.sum(onset[probation:] & ~covered[probation:]))
    return tuple(detected), false_onsets, n - probation


Task = tuple[str, str | None, str, str, int, bool, int]


def _work(task: Task) -> Outcome:
    label, params_json, family, resolution, seed, clean, naive_window = task
    series = generate(family, resolution, seed, clean=clean)
    params = None if params_json is None else (
        NEVER if params_json == NEVER else json.loads(params_json))
    began = time.perf_counter()
    anomalous, onset = run_detector(series, params, naive_window)
    detected, false_onsets, judged = judge(series, anomalous, onset)
    return Outcome(label, family, resolution, seed, clean, detected, false_onsets, judged,
                   time.perf_counter() - began)


@dataclass(frozen=True, slots=True)
class Quality:
    f1: float
    recall: float
    precision: float
    false_alarms: float
    """Onsets per 1000 judged points on anomaly-free series."""
    nab: float
    """NAB-like normalised score on the labeled series: 100 x (raw - never) / (perfect -
    never), raw = TP - FN - 0.11 FP (NAB's standard weights, without its earliness weighting:
    a window here is the anomaly plus TOLERANCE points). Never alerting scores 0, a perfect
    detector 100; a detector whose false positives cost more than its detections is below 0."""


def _quality(outcomes: Iterable[Outcome]) -> Quality:
    tp = fn = fp = false_clean = judged_clean = 0
    for o in outcomes:
        if o.clean:
            false_clean += o.false_onsets
            judged_clean += o.judged
            continue
        hits = sum(d for _, d in o.detected)
        tp += hits
        fn += len(o.detected) - hits
        fp += o.false_onsets
    recall = tp / (tp + fn) if tp + fn else 1.0
    precision = tp / (tp + fp) if tp + fp else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    windows = tp + fn
    raw = tp - fn - NAB_FP_WEIGHT * fp
    nab = 100 * (raw + windows) / (2 * windows) if windows else 0.0
    return Quality(f1, recall, precision, 1000 * false_clean / max(judged_clean, 1), nab)


_FIELDS = ("f1", "recall", "precision", "false_alarms", "nab")


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def summarise(outcomes: Sequence[Outcome], labels: Sequence[str], seeds: Sequence[int],
              combos: Sequence[tuple[str, str]]) -> dict[tuple[str, str, str], Quality]:
    """Median over seeds per (label, family, resolution), and per label over all combos
    (family "ALL": per seed the mean over combos, then the median over seeds)."""
    table: dict[tuple[str, str, str], Quality] = {}
    index: dict[tuple[str, str, str, int], list[Outcome]] = {}
    for o in outcomes:
        index.setdefault((o.label, o.family, o.resolution, o.seed), []).append(o)
    for label in labels:
        per_seed_all: list[list[Quality]] = [[] for _ in seeds]
        for family, resolution in combos:
            per_seed = [_quality(index.get((label, family, resolution, s), []))
                        for s in seeds]
            for bucket, quality in zip(per_seed_all, per_seed, strict=True):
                bucket.append(quality)
            table[label, family, resolution] = Quality(
                *(_median([getattr(q, f) for q in per_seed])
                  for f in _FIELDS))
        means = [Quality(*(statistics.fmean(getattr(q, f) for q in qs)
                           for f in _FIELDS))
                 for qs in per_seed_all]
        table[label, "ALL", ""] = Quality(
            *(_median([getattr(q, f) for q in means])
              for f in _FIELDS))
        table[label, "POOLED", ""] = _quality(o for o in outcomes if o.label == label)
    return table


def kind_recall(outcomes: Sequence[Outcome], label: str) -> dict[str, float]:
    hits: dict[str, list[bool]] = {}
    for o in outcomes:
        if o.label == label and not o.clean:
            for kind, detected in o.detected:
                hits.setdefault(kind, []).append(detected)
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}


def render(table: dict[tuple[str, str, str], Quality], labels: Sequence[str],
           combos: Sequence[tuple[str, str]], outcomes: Sequence[Outcome]) -> str:
    width = max(12, *(len(label) for label in labels))
    head = f"{'family':<7}{'res':<4}" + "".join(
        f" | {label:^{width + 21}}" for label in labels)
    sub = " " * 11 + "".join(
        f" | {'F1':>5} {'R':>5} {'P':>5} {'FA/1k':>{width - 4}} {'NAB':>6}" for _ in labels)
    lines = [head, sub, "-" * len(head)]
    for family, resolution in (*combos, ("ALL", ""), ("POOLED", "")):
        cells = []
        for label in labels:
            q = table[label, family, resolution]
            cells.append(f" | {q.f1:5.2f} {q.recall:5.2f} {q.precision:5.2f} "
                         f"{q.false_alarms:>{width - 4}.2f} {q.nab:6.1f}")
        if family == "ALL":
            lines.append("-" * len(head))
        lines.append(f"{family:<7}{resolution:<4}" + "".join(cells))
    lines.append("")
    lines.append("recall by anomaly kind (all seeds pooled):")
    for label in labels:
        recalls = kind_recall(outcomes, label)
        lines.append(f"  {label:<{width}} " + "  ".join(
            f"{k} {v:.2f}" for k, v in recalls.items()))
    return "\n".join(lines)


def _parse_detector(text: str) -> tuple[str, dict[str, Any]]:
    label, _, raw = text.partition("=")
    params = json.loads(raw) if raw else {}
    if not isinstance(params, dict):
        raise argparse.ArgumentTypeError(f"{text!r}: expected LABEL or LABEL=JSON object")
    return label, {"kind": "zscore", **params}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"seeds {QUICK_SEEDS} only (about a minute on 2 cores)")
    parser.add_argument("--heldout", action="store_true",
                        help="the held-out seeds (final evaluation only)")
    parser.add_argument("--seeds", type=int, nargs="*", help="explicit seeds")
    parser.add_argument("--detector", action="append", type=_parse_detector, default=[],
                        help="LABEL=JSON zscore parameters (kind defaults to zscore); "
                             "repeatable; default: one zscore with default parameters")
    parser.add_argument("--naive-window", type=int, default=100,
                        help="points behind the naive rolling band (default 100)")
    parser.add_argument("--family", action="append", default=[],
                        help="restrict to these families (A1..A4, NAB)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)

    seeds: Sequence[int] = (args.seeds if args.seeds else HELDOUT_SEEDS if args.heldout
                            else QUICK_SEEDS if args.quick else TUNING_SEEDS)
    detectors: list[tuple[str, dict[str, Any]]] = args.detector or [("zscore", {"kind":
                                                                                "zscore"})]
    combos = [c for c in COMBOS if not args.family or c[0] in args.family]
    labels = [label for label, _ in detectors] + [f"{NAIVE}{args.naive_window}", NEVER]
    tasks: list[Task] = []
    for family, resolution in combos:
        for seed in seeds:
            for clean in (False, True):
                for label, params in detectors:
                    tasks.append((label, json.dumps(params), family, resolution, seed,
                                  clean, args.naive_window))
                tasks.append((labels[-2], None, family, resolution, seed, clean,
                              args.naive_window))
                tasks.append((NEVER, NEVER, family, resolution, seed, clean,
                              args.naive_window))
    tasks.sort(key=lambda t: -LENGTH[t[3]])  # longest first, for an even finish
    began = time.perf_counter()
    with Pool(args.jobs) as pool:
        outcomes = list(pool.imap_unordered(_work, tasks, chunksize=1))
    table = summarise(outcomes, labels, seeds, combos)
    print(f"seeds {list(seeds)}; {len(tasks)} runs in {time.perf_counter() - began:.0f}s "
          f"on {args.jobs} processes; medians over seeds; tolerance {TOLERANCE} points; "
          f"FA/1k = false onsets per 1000 points on anomaly-free series; NAB = NAB-like "
          f"score (never alerting = 0, perfect = 100)")
    for label, params in detectors:
        print(f"  {label}: {json.dumps(params)}")
    print(render(table, labels, combos, outcomes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
