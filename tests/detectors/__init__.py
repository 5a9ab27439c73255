"""Tests for the detect stage: the shared detector contract and the point detectors."""
