"""Rules files for tests: the receiver and tier tables every test config starts with."""

CONSOLE_TIERS = """\
[receivers.console]
kind = "console"
[tiers.1]
receivers = ["console"]
[tiers.2]
receivers = ["console"]
[tiers.3]
receivers = ["console"]
"""
"""Every tier to one console receiver: append `[[rules]]` tables to get a rules file."""
