"""Shared fixtures: the Kafka broker under test (see tests/broker.py)."""

pytest_plugins = ["tests.broker"]
