"""Offline benchmarks (not shipped): detector quality on labeled synthetic series."""
