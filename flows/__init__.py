"""Bytewax dataflows: they only wire the stages; the logic lives in the stage packages."""
