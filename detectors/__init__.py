"""Detectors: online baselines per series that score a point, then learn it.

`build({"kind": ..., **params})` makes any registered detector from its alerts.toml table.
Importing this package registers every detector module listed below.
"""

from detectors.base import Detector, DetectorConfigError, Score, build, example_params, kinds

# --- point detectors (threshold, zscore, ratio, percentile) ---
# --- statistical detectors (drift, trend, novelty, two_sample) ---

__all__ = ["Detector", "DetectorConfigError", "Score", "build", "example_params", "kinds"]
