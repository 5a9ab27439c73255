"""`spanwatch run` as a user starts it, for the end-to-end tests: a subprocess configured only by
`SPANWATCH_*` environment variables, reading a real broker, notifying local PagerDuty and Slack
fakes, with its outbox, digest store and recovery directory in a test directory.

The rules are the shipped `alerts.toml` with the receivers pointed at the fakes; `compress`
shortens the baselines of the detector rules a scenario needs (hours of traffic instead of
days), and `END_RULE` is a tier-3 rule on the marker service that tells the test the flow has
worked through the whole scenario (its transition is logged after every earlier one).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from notify.outbox import Outbox, OutboxRow
from tests.broker import KafkaUnderTest
from tests.e2e.traffic import CLOCK_SERVICE
from tests.fakes.pagerduty_server import FakePagerDuty
from tests.fakes.slack_server import WEBHOOK_PATH, FakeSlack

REPO = Path(__file__).resolve().parents[2]
SHIPPED_RULES = REPO / "alerts.toml"
ROUTING_KEY = "e2e0routing0key00000000000000000"  # 32 characters, as PagerDuty requires
END_RULE = "e2e-end-of-traffic"
END_RULE_TOML = f"""
[[rules]]
name = "{END_RULE}"
tier = 3
metric = "request_count"
group_by = ["service"]
filters = {{ service = "{CLOCK_SERVICE}" }}
over = "1m"
when = "> 0"
runbook = "Test marker: the end-to-end traffic has been read to its end."
"""


def _replace_once(text: str, old: str, new: str) -> str:
    """A substitution in the shipped file that must apply exactly once (fails loudly if the
    shipped file changed shape)."""
    count = text.count(old)
    if count != 1:
        raise AssertionError(f"expected one {old!r} in alerts.toml, found {count}")
    return text.replace(old, new)


def e2e_rules(pagerduty_url: str, compress: Mapping[str, tuple[str, str]] = {}) -> str:
    """The shipped rules with PagerDuty pointed at the fake (Slack's webhook comes from the
    environment), `compress` {rule: (old detector text, new)} applied, plus `END_RULE`."""
    text = SHIPPED_RULES.read_text()
    text = _replace_once(text, 'kind = "pagerduty"', f'kind = "pagerduty"\nurl = "{pagerduty_url}"')
    # The digest's last scheduled send must lie before the traffic (5 h back): a run started
    # just after the shipped 09:00 Berlin send would catch that digest up at start, and the
    # preview would then begin after the traffic. 12 h ahead keeps the previous one 12 h back.
    send_at = (datetime.now(UTC) + timedelta(hours=12)).strftime("%H:%M")
    text = _replace_once(text, 'send_at = "09:00"', f'send_at = "{send_at}"')
    text = _replace_once(text, 'timezone = "Europe/Berlin"', 'timezone = "UTC"')
    for rule, (old, new) in compress.items():
        start = text.index(f'name = "{rule}"')
        end = text.find("[[rules]]", start)
        end = len(text) if end < 0 else end
        text = text[:start] + _replace_once(text[start:end], old, new) + text[end:]
    return text + END_RULE_TOML


@dataclass
class Spanwatch:
    """One `spanwatch run` subprocess and the files it works with."""

    kafka: KafkaUnderTest
    topic: str
    workdir: Path
    rules_text: str
    pagerduty_url: str
    slack_webhook_url: str
    snapshot_interval_s: float = 1.0
    extra_env: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = (sys.executable, "-m", "spanwatch.cli", "run")
    log_name: str = "spanwatch.log"
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def log_path(self) -> Path:
        return self.workdir / self.log_name

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("SPANWATCH_")}
        return {
            **keep,
            "PYTHONPATH": str(REPO),
            "SPANWATCH_KAFKA__BOOTSTRAP_SERVERS": self.kafka.bootstrap,
            "SPANWATCH_KAFKA__SPANS_TOPIC": self.topic,
            "SPANWATCH_KAFKA__DEAD_LETTER_TOPIC": f"{self.topic}-dlq",
            "SPANWATCH_KAFKA__START_FROM": "beginning",
            "SPANWATCH_KAFKA__BATCH_SIZE": "50",
            **({"SPANWATCH_KAFKA__FETCH_WAIT_MAX_MS": "10"} if self.kafka.is_embedded else {}),
            "SPANWATCH_RULES_FILE": str(self.workdir / "alerts.toml"),
            "SPANWATCH_SILENCES_FILE": str(self.workdir / "silences.json"),
            "SPANWATCH_NOTIFY__OUTBOX_PATH": str(self.state_dir / "outbox.sqlite3"),
            "SPANWATCH_NOTIFY__DIGEST_PATH": str(self.state_dir / "digest.sqlite3"),
            "SPANWATCH_NOTIFY__DIGEST_DIR": str(self.workdir / "digests"),
            "SPANWATCH_RECOVERY__DIRECTORY": str(self.state_dir / "recovery"),
            "SPANWATCH_RECOVERY__SNAPSHOT_INTERVAL": f"PT{self.snapshot_interval_s}S",
            "SPANWATCH_PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
            "SPANWATCH_SLACK_WEBHOOK_URL": self.slack_webhook_url,
            "SPANWATCH_HTTP_PORT": "0",
            # Local fakes answer at once; a short timeout keeps the lease of a send that a kill
            # interrupted short (it is sent again when the lease runs out).
            "SPANWATCH_NOTIFY__HTTP_TIMEOUT_S": "3",
            **self.extra_env,
        }

    def start(self) -> None:
        (self.workdir / "alerts.toml").write_text(self.rules_text)
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            self.process = subprocess.Popen(
                list(self.command), cwd=self.workdir, env=self.env(), stdout=log,
                stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, timeout_s: float, *, after: int = 0) -> re.Match[str]:
        """The first match of `pattern` in the log after offset `after`; fails when the process
        exits or the deadline passes first."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = re.search(pattern, self.log()[after:])
            if found is not None:
                return found
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"spanwatch exited with {self.process.returncode} "
                                     f"before {pattern!r}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} within {timeout_s:.0f}s:\n"
                                     f"{self.log()[-4000:]}")
            time.sleep(0.2)  # polling a log file written by another process

    def wait_for_end(self, timeout_s: float) -> None:
        """Until the end-of-traffic marker fired and the outbox has nothing left to send."""
        self.wait_for_log(rf"alert rule={END_RULE} tier=3 state=firing", timeout_s,
                          after=self.start_offset())
        self.wait_until(lambda: self.outbox_pending() == 0, 60, "outbox drained")

    def start_offset(self) -> int:
        """Where the log of the latest start begins."""
        return self.log().rfind(f"--- start {self.starts}\n")

    def wait_until(self, predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"not {what} within {timeout_s:.0f}s:\n{self.log()[-3000:]}")
            time.sleep(0.2)  # polling SQLite / fakes written by other threads and processes

    def outbox_rows(self) -> list[OutboxRow]:
        outbox = Outbox(self.state_dir / "outbox.sqlite3")
        try:
            return outbox.rows()
        finally:
            outbox.close()

    def outbox_pending(self) -> int:
        return sum(row.status == "pending" for row in self.outbox_rows())

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@dataclass(frozen=True)
class RunResult:
    """What one scenario run sent, as the vendors saw it, and what its outbox holds."""

    pagerduty: list[dict[str, Any]]
    """Events PagerDuty accepted, in arrival order."""
    slack: list[dict[str, Any]]
    """Webhook bodies Slack accepted, in arrival order."""
    outbox: list[OutboxRow]
    digest_preview: str
    log: str

    def pages(self, action: str = "trigger") -> list[dict[str, Any]]:
        return [e for e in self.pagerduty if e["event_action"] == action]

    def slack_about(self, rule: str) -> list[dict[str, Any]]:
        """Slack messages whose title names `rule` (any state)."""
        return [m for m in self.slack if f"] {rule}:" in m["text"]]

    def delivered(self) -> list[tuple[str, str, str, int]]:
        """(receiver, dedup_key, kind, sequence) of every delivered outbox row, sorted."""
        return sorted((r.receiver, r.dedup_key, r.kind, r.sequence) for r in self.outbox
                      if r.status == "delivered")


def slack_bodies(slack: FakeSlack) -> list[dict[str, Any]]:
    return [r.json() for r in slack.requests if r.path.startswith(WEBHOOK_PATH)
            and r.status == 200]


def digest_preview(spanwatch: Spanwatch) -> str:
    """`spanwatch digest --preview` over the run's digest store, as a user would call it."""
    done = subprocess.run(
        [sys.executable, "-m", "spanwatch.cli", "digest", "--preview"], cwd=spanwatch.workdir,
        env=spanwatch.env(), capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode()


def result_of(spanwatch: Spanwatch, pagerduty: FakePagerDuty, slack: FakeSlack) -> RunResult:
    return RunResult(pagerduty=pagerduty.events(accepted_only=True), slack=slack_bodies(slack),
                     outbox=spanwatch.outbox_rows(), digest_preview=digest_preview(spanwatch),
                     log=spanwatch.log())
