"""Detectors: online baselines per series that score a point, then learn it.

`build({"kind": ..., **params})` makes any registered detector from its alerts.toml table.
"""

from detectors.base import Detector, DetectorConfigError, Score, build, kinds

__all__ = ["Detector", "DetectorConfigError", "Score", "build", "kinds"]
