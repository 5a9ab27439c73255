"""Keeps receiver secrets (routing keys, webhook URLs, tokens) out of errors and logs.

A notifier builds one `Redactor` from its own secrets and passes every vendor answer and
exception text through it; the vendor clients log through a logger carrying a
`RedactingFilter`, because some of them log the URL (a Slack webhook URL *is* the secret).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import quote, urlsplit

from pydantic import SecretStr

MASK = "[redacted]"
_MIN_SECRET_LEN = 4  # shorter values would mask ordinary words; no real secret is that short


class Redactor:
    """Replaces every known secret value (and its URL-encoded and path forms) with a mask."""

    __slots__ = ("_values",)

    def __init__(self, secrets: Iterable[SecretStr | str | None]) -> None:
        values: set[str] = set()
        for secret in secrets:
            if secret is None:
                continue
            raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
            if len(raw) < _MIN_SECRET_LEN:
                continue
            values.update({raw, quote(raw, safe=""), quote(raw)})
            parts = urlsplit(raw)
            if parts.scheme and parts.path and len(parts.path) > 1:
                # A webhook URL's path (and its last segment) is the token; errors often
                # print only the path.
                values.add(parts.path)
                last = parts.path.rstrip("/").rsplit("/", 1)[-1]
                if len(last) >= 8:
                    values.add(last)
        # Longest first, so a URL is masked whole before its path segments are.
        self._values = tuple(sorted(values, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text


class RedactingFilter(logging.Filter):
    """Masks secrets in log records of the logger it is attached to (vendor client loggers).

    It keeps every redactor added to it: two notifiers built with the same name (a rebuild, a
    test-receiver run next to the service) share the logger, and masking an old secret too is
    harmless while forgetting one is not.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactors = [redactor]

    def add(self, redactor: Redactor) -> None:
        self._redactors.append(redactor)

    def _redact(self, text: str) -> str:
        for redactor in self._redactors:
            text = redactor(text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            # The traceback may quote a URL; keep the exception's type and redacted text only.
            exc = record.exc_info[1]
            message = f"{message} ({type(exc).__name__}: {exc})"
            record.exc_info = None
            record.exc_text = None
        record.msg = self._redact(message)
        record.args = None
        return True


def redacting_logger(name: str, redactor: Redactor) -> logging.Logger:
    """A logger for a vendor client whose records pass through `redactor` first."""
    logger = logging.getLogger(name)
    for existing in logger.filters:
        if isinstance(existing, RedactingFilter):
            existing.add(redactor)
            return logger
    logger.addFilter(RedactingFilter(redactor))
    return logger
