"""Shared fixtures: the Kafka broker under test (see tests/broker.py); Hypothesis settings."""

from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.broker"]

# CI machines are shared and busy: time-based health checks and deadlines measure the load,
# not the code. Examples and shrinking are unchanged.
settings.register_profile("shared-machine", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared-machine")
