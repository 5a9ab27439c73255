"""The default 3-sigma detector (detect stage): a point against its series' own forecast.

In: one value per series per step with its event time and sample size `n`. Out: a `Score`
with a calibrated anomaly in [0, 1], or None while warming up (and for n < `min_samples`).

Baseline: a one-step forecast, Holt-Winters-like and additive, so that a trend or a daily or
weekly pattern neither lags behind nor inflates the spread:

- a level, exponentially smoothed with a half-life in points (`level_half_life`, default 8,
  or a duration), so it follows trends and slow wandering at any resolution without knowing
  it; each point moves it by at most 2 spreads' worth (a Huber-style clip), so a burst or a
  shift that stays inside the band is absorbed slowly and shows in the run evidence below;
- seasonal offsets (`seasonal.Profile`): an hour-of-day profile and, on top of it, an
  hour-of-week one, interpolated between hour slots, each slot a time-decayed mean of what a
  slow anchor level (half-life one day) leaves, over `half_life` (the weekly profile over
  3 x `half_life`, and only once the daily one has two days behind it);
- optionally a damped trend (x0.95 a point), for shapes the profiles do not cover.

`seasonality` picks which forecasts compete: `"none"` (level), `"hour_of_day"` (level +
daily profile), `"hour_of_week"` (level + daily + weekly profile), or `"auto"` (default: all
three), each with and without the trend. All of them are kept up to date (a few floats
each) and their one-step errors on learned points, in units of the current spread, are
averaged over two days once the daily profile is a day old; the detector switches to the best
when it beats the one in use by 2%. So weekly slots are used once the resolution and history
make them pay (with hourly data a slot sees one point a week), and never on a series without
that pattern. The detail of each Score names the forecast in use.

Spread: the root mean square of the forecast errors (the median/MAD with `robust = true`),
time-decayed over `half_life`, kept globally and per hour of day (blended with the global one
while a slot is young, see `seasonal.SeasonalBaseline`). The per-hour spread is used while it
predicts the errors better (their Gaussian log-likelihood, decayed over `half_life`), so
counts with quiet nights and busy afternoons get a band for each, while hourly data, with a
handful of points per slot, keeps the steadier global one. A spread from few points is read
as Student's t. It has a floor (`min_spread`, and `min_spread_ratio` x the level) so a flat
series does not page on tiny wiggles.

Anomalous points are not learned (`learn_anomalies = false`), nor is anything while an
incident is open (it ends after `cooldown` normal points), and learned points are winsorized
at `sigma` spreads; once an incident has `adapt_after` anomalous points (or has lasted that
long) its mean offset is accepted as the new level (the profiles keep their shape).

What `sigma` means: with `sigma_per = "day"` (default), a Gaussian series raises a false alarm
about as rarely per *day* as a 3-sigma event is rare (p = 0.27%: about once a year), whatever
its resolution: the per-point band widens with the series' measured points per day (about
5.0 at one point a minute, 4.2 hourly, 3.4 daily, the false-alarm budget being split over the
run lengths below). `sigma_per = "point"` is the classic per-point band. A shift is judged on
runs too: the z of the sum of the last 2 to 4 points, when all deviate the same way, normalised
for the residuals' lag-1 autocorrelation (a point counts in a run for at most the band minus
1, so a spike does not carry over), so a step as high as the band shows by its second point
(b * sqrt(2) clears b by 2.1 sd at one point a minute; `decision_band`, README "zscore: what
sigma and a 3-sigma step mean").

Calibration, so `sigma` means about the same alert frequency on Gaussian and heavy-tailed
series: the z of every learned point (and of each incident's onset, not the rest of it) goes
into a decayed histogram (half-life 10 000 points, 0.25-wide bins per side). Each side's z is
scaled so the series' tail lands where a Gaussian's does, measured as far out as the history
supports and extrapolated beyond with the tail's own steepness (see `moments.tail_factor`),
shrunk to 1 with the weight of 1000 points. The factor is never above 1: calibration only
makes a noisy series quieter. Then `anomaly = (1 - 2 * tail * 4) ** m` for m points per day
(or 1): about the chance that a normal day has no point this extreme, 0.9973 at the band.

>>> from datetime import UTC, datetime, timedelta
>>> detector = _build({"warmup": 30, "warmup_span": "30m"})
>>> start = datetime(2025, 1, 6, tzinfo=UTC)
>>> for i in range(40):
...     detector.learn(10.0 + (i % 5 - 2) / 2, start + timedelta(minutes=i))
>>> detector.score(10.4, start + timedelta(minutes=40)).is_anomalous
False
>>> score = detector.score(30.0, start + timedelta(minutes=40))
>>> score.is_anomalous, score.is_onset, round(score.baseline)
(True, True, 10)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from statistics import NormalDist
from typing import Any, ClassVar, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from detectors.base import Score, check_version, register
from detectors.moments import (
    Incident,
    Location,
    StatsData,
    ZHistogram,
    decay,
    normal_tail,
    t_to_z,
    tail_factor,
)
from detectors.params import Params
from detectors.seasonal import (
    SEASONALITIES,
    Profile,
    ProfileData,
    SeasonalBaseline,
    local_time,
)

VERSION = 2
CALIBRATION_HALF_LIFE_POINTS = 10_000.0
DIRECTIONS = ("both", "up", "down")
SEASONAL_PARTS = ("level", "level + hour of day", "level + hour of day + hour of week")
"""What a forecast adds up, by the number of seasonal profiles it uses."""
_PROFILES = {"none": (0,), "hour_of_day": (1,), "hour_of_week": (2,), "auto": (0, 1, 2)}
"""The numbers of profiles whose forecasts a seasonality setting chooses from."""
_TREND_DAMPING = 0.95  # per point
_TREND_SHARE = 0.3  # of the level's correction that goes into the trend
_DAY_S = 86_400.0
_GAP_MEMORY = 100  # points behind the points-per-day estimate
_STANDARD_NORMAL = NormalDist()
RUN_POINTS = 4  # a level shift is judged on up to this many consecutive points
_RUN_MIN_Z = 1.0  # every point of such a run deviates at least this much, the same way
_RUN_CAP_MARGIN = 1.0  # in a later run a point counts for at most the band minus this
_LAG_MEMORY = 1000  # points behind the autocorrelation estimate
_WEEKLY_MEMORY = 3.0  # the weekly profile remembers this many times `half_life`
_ANCHOR_HALF_LIFE_S = _DAY_S  # the slow level the profiles are learned against
_WEEKLY_AFTER_S = 2 * _DAY_S  # the weekly profile learns once the daily one is this old
_COMPARE_AFTER_S = _DAY_S  # forecasts are compared once the daily profile is this old
_COMPARE_HALF_LIFE_S = 2 * _DAY_S  # memory of the forecast comparison
_SWITCH_MARGIN = 0.02  # another forecast must be this much better to be switched to
_LEVEL_CLIP = 2.0  # a point moves the level by at most this many spreads' worth


@dataclass(frozen=True, slots=True)
class ZScoreConfig:
    sigma: float
    sigma_per: str
    direction: str
    half_life_s: float
    """Memory of the daily profile and the spread (the weekly profile: 3 x as long)."""
    level_half_life: float
    """Half-life of the level in points (0: given as a duration instead)."""
    level_half_life_s: float
    """Or as a duration, turned into points with the measured spacing (0: in points)."""
    warmup: int
    warmup_span_s: float
    seasonality: str
    timezone: str
    slot_warmup: int
    robust: bool
    min_spread: float
    min_spread_ratio: float
    calibrate: bool
    cooldown: int
    learn_anomalies: bool
    adapt_after: int
    """Anomalous points in one incident after which its level is accepted; 0: never."""
    adapt_after_s: float
    """Or the incident's age after which its level is accepted; 0: not by time."""
    min_samples: int


@dataclass(frozen=True, slots=True)
class ZScoreState:
    version: int
    config: ZScoreConfig
    count: int
    first_s: float | None
    last_seen_s: float | None
    gap_s: float
    gap_count: int
    levels: tuple[float, ...]
    trends: tuple[float, ...]
    level_count: int
    anchor: float
    anchor_weight: float
    anchor_last_s: float | None
    daily: ProfileData
    weekly: ProfileData
    model: int
    model_errors: tuple[float, ...]
    model_weight: float
    model_last_s: float | None
    spread: StatsData
    spread_slots: tuple[StatsData, ...]
    spread_vote: float
    spread_vote_weight: float
    spread_vote_last_s: float | None
    histogram: tuple[float, ...]
    histogram_total: float
    histogram_increment: float
    recent_z: tuple[float, ...]
    z_lag: float
    z_square: float
    lag_count: int
    incident_open: bool
    normal_run: int
    run_start_s: float
    run_points: int
    run_anomalies: int
    run_offset: float
    run_m2: float


@dataclass(frozen=True, slots=True)
class _Frame:
    """Where a point falls in the seasonal cycles, and every model's forecast for it."""

    hour: int
    day: tuple[int, float]
    week: tuple[int, float]
    daily: float
    weekly: float
    forecasts: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class _Reading:
    z: float
    """The point's z (Student-t corrected), before calibration."""
    calibrated: float
    evidence: float
    """The calibrated z, or the run's if stronger (what is compared with the band)."""
    level: float
    spread: float
    tail: float
    band: float
    is_anomalous: bool
    anomaly: float


def decision_tail(sigma: float, points_per_test: float) -> float:
    """One-sided tail share a point (or run) must reach to be anomalous: the two-sided
    `sigma` tail of a Gaussian, once per `points_per_test` points (a day's worth with
    `sigma_per = "day"`), split over the RUN_POINTS run lengths and the two sides."""
    return normal_tail(sigma) / points_per_test / RUN_POINTS


def decision_band(sigma: float, points_per_test: float) -> float:
    """The band in noise sd that a point (or a run's normalised sum) must pass:
    about 5.04 for sigma 3 at one point a minute with `sigma_per = "day"`, 4.19 at one an
    hour, 3.40 per point.

    >>> round(decision_band(3.0, 1440), 2), round(decision_band(3.0, 24), 2)
    (5.04, 4.19)
    """
    return -_STANDARD_NORMAL.inv_cdf(decision_tail(sigma, points_per_test))


def zone_of(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


class ZScore:
    """Forecast-residual z-score detector for one series; see the module docstring."""

    kind: ClassVar[str] = "zscore"

    def __init__(self, config: ZScoreConfig) -> None:
        self.config = config
        self._zone = zone_of(config.timezone)
        top = max(_PROFILES[config.seasonality])
        self._models = tuple((parts, trended) for trended in (False, True)
                             for parts in range(top + 1))
        """(profiles used, with a damped trend) per forecast, those without a trend first;
        all are kept up to date, `_candidates` are the ones this seasonality may use."""
        self._candidates = tuple(index for index, (parts, _) in enumerate(self._models)
                                 if parts in _PROFILES[config.seasonality])
        self._histogram = ZHistogram.empty()
        self._count = 0
        self._first_s: float | None = None
        self._last_seen_s: float | None = None
        self._gap_s, self._gap_count = 0.0, 0
        self._recent_z: list[float] = []
        self._z_lag, self._z_square, self._lag_count = 0.0, 0.0, 0
        self._incident = Incident()
        self._run_start_s, self._run_points, self._run_anomalies = 0.0, 0, 0
        self._run_offset, self._run_m2 = 0.0, 0.0
        self._forget_baseline()

    def _forget_baseline(self) -> None:
        c = self.config
        models = len(self._models)
        top = max(parts for parts, _ in self._models)
        self._levels = [0.0] * models
        self._trends = [0.0] * models
        self._level_count = 0
        self._anchor, self._anchor_weight = 0.0, 0.0
        self._anchor_last_s: float | None = None
        self._daily = Profile.empty("hour_of_day" if top > 0 else "none")
        self._weekly = Profile.empty("hour_of_week" if top > 1 else "none")
        self._model = self._candidates[0]
        self._model_errors = [0.0] * models
        self._model_weight = 0.0
        self._model_last_s: float | None = None
        self._spread_vote, self._spread_vote_weight = 0.0, 0.0
        self._spread_vote_last_s: float | None = None
        self._spread = SeasonalBaseline.empty(
            "none" if c.seasonality == "none" else "hour_of_day",
            half_life_s=c.half_life_s, slot_warmup=c.slot_warmup)

    def rebaseline(self) -> None:
        """Forget the baseline and warm up again (a deploy changed the model or prompt).

        Kept: the calibration histogram (the series' noise shape) and its points per day.
        """
        self._forget_baseline()
        self._count, self._first_s = 0, None
        self._recent_z = []
        self._incident = Incident()
        self._reset_run(0.0)

    def _reset_run(self, at_s: float) -> None:
        self._run_start_s, self._run_points, self._run_anomalies = at_s, 0, 0
        self._run_offset, self._run_m2 = 0.0, 0.0

    def _points_per_test(self) -> float:
        """How many points share one false-alarm budget: a day's worth, or 1 per point."""
        if self.config.sigma_per == "point" or self._gap_count == 0:
            return 1.0
        return min(max(_DAY_S / max(self._gap_s, 1e-3), 1.0), 1e7)

    def _frame(self, at: datetime) -> _Frame:
        local = local_time(at, self._zone)
        day = self._daily.position(local)
        week = self._weekly.position(local)
        daily = self._daily.offset(*day)
        weekly = self._weekly.offset(*week)
        seasonal = (0.0, daily, daily + weekly)
        forecasts = tuple(
            level + _TREND_DAMPING * trend + seasonal[parts]
            for level, trend, (parts, _) in zip(self._levels, self._trends, self._models,
                                                strict=True))
        hour = local.hour if self._spread.slots else 0
        return _Frame(hour, day, week, daily, weekly, forecasts)

    def _spread_locations(self, frame: _Frame, at_s: float) -> tuple[Location, Location]:
        """The forecast errors' location for `frame`'s hour of day, and the global one."""
        robust = self.config.robust
        overall = self._spread.overall.location(robust=robust)
        if not self._spread.slots:
            return overall, overall
        return self._spread.location(frame.hour, at_s, robust=robust)[0], overall

    def _spread_of(self, frame: _Frame, locations: tuple[Location, Location]) -> tuple[
            float, float, float]:
        """(spread, estimated spread, effective points behind it) for a point in `frame`,
        given `_spread_locations`: per hour of day while that predicts the errors better,
        else global."""
        c = self.config
        hourly, overall = locations
        location = hourly if self._spread_vote > 0 else overall
        estimated = math.sqrt(location.variance + location.level * location.level)
        typical = max(abs(frame.forecasts[self._model]), abs(self._levels[self._model]))
        return (max(estimated, c.min_spread, c.min_spread_ratio * typical), estimated,
                location.count)

    def _vote_on_spread(self, error: float, locations: tuple[Location, Location],
                        at_s: float) -> None:
        """Decayed mean (over `half_life`) of how much better the hour-of-day spread predicts
        a learned error than the global one (Gaussian log-likelihood; > 0: per hour)."""
        hourly, overall = locations
        if hourly is overall:
            return
        scores = []
        for location in (hourly, overall):
            variance = location.variance + location.level * location.level
            if variance <= 0:
                return
            scores.append(-0.5 * (math.log(variance) + error * error / variance))
        kept = 1.0 if self._spread_vote_last_s is None else decay(
            at_s - self._spread_vote_last_s, self.config.half_life_s)
        self._spread_vote_last_s = (at_s if self._spread_vote_last_s is None
                                    else max(at_s, self._spread_vote_last_s))
        self._spread_vote_weight = self._spread_vote_weight * kept + 1.0
        self._spread_vote += (scores[0] - scores[1] - self._spread_vote) / self._spread_vote_weight

    def _read(self, value: float, at_s: float, frame: _Frame) -> _Reading | None:
        c = self.config
        if self._first_s is None or self._count < c.warmup:
            return None
        if at_s - self._first_s < c.warmup_span_s:
            return None
        forecast = frame.forecasts[self._model]
        spread, estimated, count = self._spread_of(frame,
                                                   self._spread_locations(frame, at_s))
        deviation = value - forecast
        if spread > 0:
            z = deviation / spread
            if spread == estimated:  # a spread from few points: read z as Student's t
                z = t_to_z(z, count - 1)
        else:
            z = 0.0 if deviation == 0 else math.copysign(math.inf, deviation)
        points = self._points_per_test()
        target = decision_tail(c.sigma, points)
        calibrated = z * self.calibration(upward=z >= 0)
        evidence = self._evidence(calibrated)
        tail = normal_tail(abs(evidence))
        is_allowed = c.direction == "both" or (
            evidence > 0 if c.direction == "up" else evidence < 0)
        anomaly = 0.0
        if is_allowed and tail * RUN_POINTS < 0.5:
            anomaly = math.exp(points * math.log1p(-2 * tail * RUN_POINTS))
        return _Reading(z, calibrated, evidence, forecast, spread, tail,
                        decision_band(c.sigma, points), is_allowed and tail <= target, anomaly)

    def _evidence(self, z: float) -> float:
        """The point's z, or if stronger, the z of the sum of the last 2..RUN_POINTS points
        when all of them deviate the same way by at least 1: a shift shows up by its second or
        third point even when each point alone is within the band. The sum is normalised for
        the series' lag-1 autocorrelation of z (AR(1) variance), so slowly wandering residuals
        do not add up to false evidence. (The false-alarm budget is split across the
        RUN_POINTS scales.)"""
        rho = self._autocorrelation()
        best, total, variance = z, z, 1.0
        for k, earlier in enumerate(reversed(self._recent_z), start=2):
            if abs(earlier) < _RUN_MIN_Z or abs(z) < _RUN_MIN_Z or (earlier > 0) != (z > 0):
                break
            total += earlier
            variance += 1.0 + 2.0 * sum(rho ** lag for lag in range(1, k))
            if abs(total) / math.sqrt(variance) > abs(best):
                best = total / math.sqrt(variance)
        return best

    def _autocorrelation(self) -> float:
        """Lag-1 autocorrelation of z, clipped to [0, 0.95] (negative would only sharpen)."""
        if self._lag_count == 0 or self._z_square <= 0:
            return 0.0
        return min(max(self._z_lag / self._z_square, 0.0), 0.95)

    def _track_autocorrelation(self, z: float) -> None:
        if not self._recent_z or not math.isfinite(z) or not math.isfinite(self._recent_z[-1]):
            return
        self._lag_count = min(self._lag_count + 1, _LAG_MEMORY)
        self._z_lag += (z * self._recent_z[-1] - self._z_lag) / self._lag_count
        self._z_square += (z * z - self._z_square) / self._lag_count

    def calibration(self, *, upward: bool) -> float:
        """The factor (<= 1) this series' z is scaled by on one side before it is compared
        with the band: 1.0 for Gaussian tails, less for heavy ones (1.0 without history)."""
        if not self.config.calibrate or self._histogram.total <= 0:
            return 1.0
        target = decision_tail(self.config.sigma, self._points_per_test())
        return tail_factor(self._histogram, positive=upward, decision_share=target)

    def _accepts(self, value: float, n: int) -> bool:
        return n >= self.config.min_samples and math.isfinite(value)

    def score(self, value: float, at: datetime, *, n: int = 1) -> Score | None:
        if not self._accepts(value, n):
            return None
        frame = self._frame(at)
        reading = self._read(value, at.timestamp(), frame)
        if reading is None:
            return None
        c = self.config
        parts, trended = self._models[self._model]
        model = SEASONAL_PARTS[parts] + (" + trend" if trended else "")
        level = self._levels[self._model]
        return Score(
            value=value, baseline=reading.level, spread=reading.spread,
            anomaly=reading.anomaly, is_anomalous=reading.is_anomalous,
            is_onset=self._incident.is_onset(reading.is_anomalous), detector=self.kind,
            detail=(f"z={reading.z:+.2f} (calibrated {reading.calibrated:+.2f}, with the run "
                    f"{reading.evidence:+.2f}) vs {model} forecast "
                    f"({level:.6g} {reading.level - level:+.6g}); band "
                    f"{reading.band:.2f} for sigma {c.sigma:g} per {c.sigma_per}"))

    def learn(self, value: float, at: datetime, *, n: int = 1) -> None:
        if not self._accepts(value, n):
            return
        c, at_s = self.config, at.timestamp()
        frame = self._frame(at)
        reading = self._read(value, at_s, frame)
        self._track_rate(at_s)
        if reading is None:  # warming up: learn everything
            self._first_s = at_s if self._first_s is None else min(self._first_s, at_s)
            self._count = min(self._count + 1, c.warmup)
            self._learn_point(value, frame, at_s, limit=math.inf, level_limit=math.inf)
            return
        is_onset = self._incident.is_onset(reading.is_anomalous)
        if not (reading.is_anomalous or self._incident.is_open):
            self._track_autocorrelation(reading.calibrated)
        # In a later run a point counts for at most the band minus 1 (and at least sigma):
        # a spike followed by an ordinary point (z < 3) is still one anomalous point, while
        # a lasting shift of about the band's height shows by its second point.
        cap = max(c.sigma, reading.band - _RUN_CAP_MARGIN)
        capped = min(max(reading.calibrated, -cap), cap)
        self._recent_z = [*self._recent_z[-(RUN_POINTS - 2):], capped]
        if c.calibrate and (is_onset or not reading.is_anomalous):
            self._histogram.add(reading.z, half_life_points=CALIBRATION_HALF_LIFE_POINTS)
        self._track_level_shift(value - reading.level, reading.is_anomalous, is_onset, at_s)
        is_quarantined = reading.is_anomalous or self._incident.is_open
        self._incident.observe(reading.is_anomalous, cooldown=c.cooldown)
        if c.learn_anomalies or not is_quarantined:
            # Winsorized at the classic sigma band, so one outlier that stays inside the
            # (wider) alarm band cannot drag the forecast or blow up the spread; the level
            # moves by at most _LEVEL_CLIP spreads' worth.
            self._learn_point(value, frame, at_s, limit=c.sigma * reading.spread,
                              level_limit=min(_LEVEL_CLIP, c.sigma) * reading.spread)

    def _level_rate(self) -> float:
        """The level's smoothing rate per point (from its half-life in points, or in time
        over the measured spacing); a running mean while fewer points were learned."""
        c = self.config
        half_life = c.level_half_life
        if c.level_half_life_s > 0:
            half_life = c.level_half_life_s / self._gap_s if self._gap_count else 1.0
        rate = 1.0 - decay(1.0, max(half_life, 1e-3))
        return max(rate, 1.0 / self._level_count)

    def _learn_point(self, value: float, frame: _Frame, at_s: float, *, limit: float,
                     level_limit: float) -> None:
        """Learn a point, winsorized at `limit` from the forecast in use, into the forecast
        comparison, the spread, the profiles, the anchor and every forecast's level and trend
        (their corrections clipped at `level_limit`)."""
        c = self.config
        forecasts = frame.forecasts
        if self._level_count == 0:  # the very first point: every level starts from it
            self._levels = [value] * len(self._levels)
            self._anchor = value
            forecasts = tuple(value for _ in forecasts)
        chosen = forecasts[self._model]
        learned = chosen + min(max(value - chosen, -limit), limit)
        daily_age = -math.inf if self._daily.origin_s is None else at_s - self._daily.origin_s
        locations = self._spread_locations(frame, at_s)
        spread, _, _ = self._spread_of(frame, locations)
        if spread > 0 and (not self._daily.values or daily_age >= _COMPARE_AFTER_S):
            self._compare_models(learned, forecasts, spread, at_s)
        self._vote_on_spread(learned - chosen, locations, at_s)
        self._spread.update(learned - chosen, frame.hour, at_s)
        if self._daily.values:
            # What the anchor leaves. The anchor is a mean of the first points only, so its
            # first day counts little (from 0.1% up to full weight after a day).
            maturity = min(1.0, max(daily_age, 0.0) / _ANCHOR_HALF_LIFE_S + 1e-3)
            self._daily.learn(*frame.day, learned - self._anchor - frame.weekly, at_s,
                              half_life_s=c.half_life_s, weight=maturity)
        if self._weekly.values and daily_age >= _WEEKLY_AFTER_S:
            # What the daily profile leaves, once it has settled (else the weekly profile
            # would keep the daily one's first mistakes for weeks).
            self._weekly.learn(*frame.week, learned - self._anchor - frame.daily, at_s,
                               half_life_s=_WEEKLY_MEMORY * c.half_life_s)
        self._learn_anchor(learned - frame.daily - frame.weekly, at_s)
        self._level_count += 1
        rate = self._level_rate()
        for index, (forecast, (_, trended)) in enumerate(zip(forecasts, self._models,
                                                              strict=True)):
            error = min(max(learned - forecast, -level_limit), level_limit)
            if trended:
                trend = _TREND_DAMPING * self._trends[index]
                self._levels[index] += trend + rate * error
                self._trends[index] = trend + _TREND_SHARE * rate * error
            else:
                self._levels[index] += rate * error

    def _learn_anchor(self, deseasonalized: float, at_s: float) -> None:
        """The slow level the profiles learn against: a time-decayed mean over a day."""
        kept = 1.0 if self._anchor_last_s is None else decay(at_s - self._anchor_last_s,
                                                             _ANCHOR_HALF_LIFE_S)
        self._anchor_last_s = at_s if self._anchor_last_s is None else max(at_s,
                                                                           self._anchor_last_s)
        self._anchor_weight = self._anchor_weight * kept + 1.0
        self._anchor += (deseasonalized - self._anchor) / self._anchor_weight

    def _compare_models(self, learned: float, forecasts: tuple[float, ...], spread: float,
                        at_s: float) -> None:
        """Decayed mean squared one-step error of every forecast, in units of the current
        spread; switch to the best candidate when it beats the one in use by the margin."""
        if len(self._candidates) == 1:
            return
        kept = 1.0 if self._model_last_s is None else decay(at_s - self._model_last_s,
                                                            _COMPARE_HALF_LIFE_S)
        self._model_last_s = at_s if self._model_last_s is None else max(self._model_last_s,
                                                                       at_s)
        self._model_weight = self._model_weight * kept + 1.0
        share = 1.0 / self._model_weight
        for index, forecast in enumerate(forecasts):
            error = (learned - forecast) / spread
            self._model_errors[index] += share * (error * error - self._model_errors[index])
        best = min(self._candidates, key=self._model_errors.__getitem__)
        if self._model_errors[best] < (1 - _SWITCH_MARGIN) * self._model_errors[self._model]:
            self._model = best

    def _track_rate(self, at_s: float) -> None:
        """Mean gap between points (running mean, then EW over ~100 points)."""
        if self._last_seen_s is not None and at_s >= self._last_seen_s:
            self._gap_count = min(self._gap_count + 1, _GAP_MEMORY)
            self._gap_s += (at_s - self._last_seen_s - self._gap_s) / self._gap_count
        self._last_seen_s = at_s if self._last_seen_s is None else max(self._last_seen_s, at_s)

    def _track_level_shift(self, deviation: float, is_anomalous: bool, is_onset: bool,
                           at_s: float) -> None:
        """Accept a persistent shift: after enough anomalies in one incident, move the levels
        by the incident's mean deviation (over all its points, so noise around the new level
        does not bias it); the seasonal profiles keep their shape."""
        c = self.config
        if is_onset:
            self._reset_run(at_s)
        elif not self._incident.is_open:
            return
        self._run_points += 1
        step = deviation - self._run_offset
        self._run_offset += step / self._run_points
        self._run_m2 += step * (deviation - self._run_offset)
        self._run_anomalies += is_anomalous
        is_due = (c.adapt_after > 0 and self._run_anomalies >= c.adapt_after) or (
            c.adapt_after_s > 0 and at_s - self._run_start_s >= c.adapt_after_s)
        if is_due and self._run_anomalies > 0:
            self._levels = [level + self._run_offset for level in self._levels]
            self._anchor += self._run_offset
            self._spread.shift(0.0, min_variance=self._run_m2 / self._run_points)
            self._reset_run(at_s)
            self._recent_z = []  # measured against the old level

    def snapshot(self) -> ZScoreState:
        spread, spread_slots = self._spread.export()
        return ZScoreState(
            version=VERSION, config=self.config, count=self._count, first_s=self._first_s,
            last_seen_s=self._last_seen_s, gap_s=self._gap_s, gap_count=self._gap_count,
            levels=tuple(self._levels), trends=tuple(self._trends),
            level_count=self._level_count, anchor=self._anchor,
            anchor_weight=self._anchor_weight, anchor_last_s=self._anchor_last_s,
            daily=self._daily.export(), weekly=self._weekly.export(), model=self._model,
            model_errors=tuple(self._model_errors), model_weight=self._model_weight,
            model_last_s=self._model_last_s, spread=spread, spread_slots=spread_slots,
            spread_vote=self._spread_vote, spread_vote_weight=self._spread_vote_weight,
            spread_vote_last_s=self._spread_vote_last_s,
            histogram=tuple(self._histogram.bins), histogram_total=self._histogram.total,
            histogram_increment=self._histogram.increment, recent_z=tuple(self._recent_z),
            z_lag=self._z_lag, z_square=self._z_square, lag_count=self._lag_count,
            incident_open=self._incident.is_open, normal_run=self._incident.normal_run,
            run_start_s=self._run_start_s, run_points=self._run_points,
            run_anomalies=self._run_anomalies, run_offset=self._run_offset,
            run_m2=self._run_m2)

    @classmethod
    def restore(cls, state: ZScoreState) -> Self:
        check_version(cls.kind, state.version, VERSION)
        c = state.config
        detector = cls(c)
        detector._count, detector._first_s = state.count, state.first_s
        detector._last_seen_s, detector._gap_s = state.last_seen_s, state.gap_s
        detector._gap_count = state.gap_count
        detector._levels, detector._level_count = list(state.levels), state.level_count
        detector._trends = list(state.trends)
        detector._anchor, detector._anchor_weight = state.anchor, state.anchor_weight
        detector._anchor_last_s = state.anchor_last_s
        detector._daily = Profile.load(state.daily)
        detector._weekly = Profile.load(state.weekly)
        detector._model, detector._model_errors = state.model, list(state.model_errors)
        detector._model_weight = state.model_weight
        detector._model_last_s = state.model_last_s
        detector._spread = SeasonalBaseline.load(
            detector._spread.seasonality, half_life_s=c.half_life_s,
            slot_warmup=c.slot_warmup, overall=state.spread, slots=state.spread_slots)
        detector._spread_vote = state.spread_vote
        detector._spread_vote_weight = state.spread_vote_weight
        detector._spread_vote_last_s = state.spread_vote_last_s
        detector._histogram = ZHistogram(list(state.histogram), state.histogram_total,
                                         state.histogram_increment)
        detector._recent_z = list(state.recent_z)
        detector._z_lag, detector._z_square = state.z_lag, state.z_square
        detector._lag_count = state.lag_count
        detector._incident = Incident(state.incident_open, state.normal_run)
        detector._run_start_s, detector._run_points = state.run_start_s, state.run_points
        detector._run_anomalies, detector._run_offset = state.run_anomalies, state.run_offset
        detector._run_m2 = state.run_m2
        return detector


class _ZScoreParams(Params):
    def zone(self, name: str, *, default: str) -> str:
        self._used.add(name)
        value = self._raw.get(name, default)
        try:
            if isinstance(value, str) and value:
                zone_of(value)
                return value
        except (ZoneInfoNotFoundError, ValueError):
            pass
        raise self._fail(name, f"is {value!r}; expected an IANA time zone such as "
                               f"\"UTC\" or \"Europe/Berlin\"")

    def points_or_duration(self, name: str, *, default: int, low: int = 0,
                           high: int | None = None) -> tuple[int, float]:
        if isinstance(self._raw.get(name), str):
            return 0, self.duration(name, default="1h", low=timedelta(seconds=1)).total_seconds()
        return self.integer(name, default=default, low=low, high=high), 0.0


@register("zscore", example={"sigma": 3.0, "seasonality": "auto", "half_life": "7d",
                             "warmup": 30, "warmup_span": "1h"})
def _build(params: Mapping[str, Any]) -> ZScore:
    p = _ZScoreParams(params, "zscore")
    seasonality = p.choice("seasonality", default="auto", allowed=("auto", *SEASONALITIES))
    day = timedelta(days=1)
    adapt_after, adapt_after_s = p.points_or_duration("adapt_after", default=60)
    level_half_life, level_half_life_s = p.points_or_duration(
        "level_half_life", default=8, low=1, high=1_000_000)
    config = ZScoreConfig(
        sigma=p.number("sigma", default=3.0, low=0.5, high=20),
        sigma_per=p.choice("sigma_per", default="day", allowed=("day", "point")),
        direction=p.choice("direction", default="both", allowed=DIRECTIONS),
        half_life_s=p.duration("half_life", default="7d", low=timedelta(minutes=1),
                               high=365 * day).total_seconds(),
        level_half_life=float(level_half_life),
        level_half_life_s=level_half_life_s,
        warmup=p.integer("warmup", default=30, low=2, high=1_000_000),
        warmup_span_s=p.duration("warmup_span", default="1h", low=timedelta(0),
                                 high=365 * day).total_seconds(),
        seasonality=seasonality,
        timezone=p.zone("timezone", default="UTC"),
        slot_warmup=p.integer("slot_warmup", default=10, low=1, high=100_000),
        robust=p.flag("robust", default=False),
        min_spread=p.number("min_spread", default=0.0, low=0.0),
        min_spread_ratio=p.number("min_spread_ratio", default=0.01, low=0.0, high=10.0),
        calibrate=p.flag("calibrate", default=True),
        cooldown=p.integer("cooldown", default=5, low=1, high=1_000_000),
        learn_anomalies=p.flag("learn_anomalies", default=False),
        adapt_after=adapt_after,
        adapt_after_s=adapt_after_s,
        min_samples=p.integer("min_samples", default=1, low=0),
    )
    p.done()
    return ZScore(config)
