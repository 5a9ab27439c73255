"""Detectors: online baselines per series that score a point, then learn it.

`build({"kind": ..., **params})` makes any registered detector from its alerts.toml table;
`maker(params)` makes many alike, the table read once.
Importing this package registers every detector module listed below.
"""

from detectors.base import Detector, DetectorConfigError, Score, build, example_params, kinds, maker

# --- point detectors (threshold, zscore, ratio, percentile) ---
from detectors import percentile, ratio, threshold, zscore  # noqa: F401  # isort: skip  (registers)
# --- statistical detectors (drift, trend, novelty, two_sample) ---
from . import drift, novelty, trend, two_sample  # noqa: F401  (registers)

__all__ = ["Detector", "DetectorConfigError", "Score", "build", "example_params", "kinds",
           "maker"]
