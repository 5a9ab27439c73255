"""The logic of `spanwatch test-receiver` and `spanwatch digest` (the CLI only parses flags).

Results go to `out` (stdout), problems to `err` (stderr). Exit codes: 0 ok, 1 delivery
failed, 2 usage or config error (unknown receiver, missing secret, bad alerts.toml).
"""

from __future__ import annotations

import random
import sys
import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TextIO

from notify.config import NotifySettings, ReceiverConfigError, load_receivers
from notify.digest_render import render_markdown
from notify.digest_store import DigestStore
from notify.outbox import Outbox
from notify.records import (
    Delivered,
    Delivery,
    Failed,
    Notification,
    NotificationKind,
    Notifier,
)
from notify.render import build_notification
from notify.retry import RetryPolicy
from notify.runtime import (
    MissingSecretError,
    ReceiverLike,
    budget_of,
    build_notifier,
    digest_scheduler,
    policy_lease,
)
from notify.worker import Clock, DeliveryWorker, SystemClock
from rules.records import AlertEvent, Evaluation

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
TEST_RULE = "spanwatch-test-receiver"
TEST_TRACE_ID = "0af7651916cd43dd8448eb211c80319c"  # the W3C trace-context example id


def _load(rules_file: Path, given: Mapping[str, ReceiverLike] | None, err: TextIO
          ) -> Mapping[str, ReceiverLike] | None:
    if given is not None:
        return given
    try:
        return load_receivers(rules_file)
    except ReceiverConfigError as exc:
        err.write(f"{exc}\n")
        return None


def _test_events(name: str, at_unix_ns: int) -> tuple[AlertEvent, AlertEvent]:
    labels = (("receiver", name), ("test", "true"))
    evaluation = Evaluation(
        rule=TEST_RULE, tier=3, labels=labels, at_unix_ns=at_unix_ns, window_s=300.0,
        is_breach=True, value=1.0, threshold=0.5, samples=1,
        exemplar_trace_ids=(TEST_TRACE_ID,), versions=(("prompt_template_version", ("test",)),),
        detail="Test alert from spanwatch test-receiver; no action needed.")
    firing = AlertEvent(fingerprint=f"test-{at_unix_ns}", rule=TEST_RULE, tier=3, labels=labels,
                        state="firing", previous="pending", at_unix_ns=at_unix_ns,
                        started_at_unix_ns=at_unix_ns, evaluation=evaluation)
    resolved = replace(firing, state="resolved", previous="firing", at_unix_ns=at_unix_ns + 1,
                       evaluation=replace(evaluation, is_breach=False, value=0.0))
    return firing, resolved


def _send_with_retries(notifier: Notifier, n: Notification, clock: Clock, deadline_s: float,
                       out: TextIO) -> Delivery:
    """Send now, honouring Retry-After and backing off, for at most `deadline_s`."""
    policy = RetryPolicy(initial=timedelta(seconds=1), maximum=timedelta(seconds=10),
                         deadline=timedelta(seconds=deadline_s))
    started = clock.now()
    rng = random.SystemRandom()
    attempt = 0
    while True:
        attempt += 1
        delivery = notifier.send(n)
        if isinstance(delivery, Delivered | Failed):
            return delivery
        now = clock.now()
        at = policy.next_attempt_at(now, started, attempt, delivery.after, rng.random())
        out.write(f"  {n.kind}: attempt {attempt}: {delivery.why}; "
                  + (f"retrying in {(at - now).total_seconds():.1f} s\n" if at else "giving up\n"))
        if at is None:
            return Failed(f"{delivery.why} (gave up after {attempt} attempts)")
        clock.wait(_NEVER, (at - now).total_seconds())


_NEVER = threading.Event()
"""Set by nobody: waiting on it is a plain sleep through the (injectable) clock."""


def test_receiver(name: str, rules_file: Path, settings: NotifySettings, *,
                  receivers: Mapping[str, ReceiverLike] | None = None,
                  out: TextIO | None = None, err: TextIO | None = None,
                  clock: Clock | None = None, deadline_s: float = 30.0) -> int:
    """Send a clearly marked test alert (trigger, then resolve) through receiver `name` and
    print what the API answered. A digest receiver is tested through its `deliver_to`.

    `receivers` (already validated, e.g. by rules.load) spares reading `rules_file` again.
    """
    out, err = out or sys.stdout, err or sys.stderr
    clock = clock or SystemClock()
    receivers = _load(rules_file, receivers, err)
    if receivers is None:
        return EXIT_USAGE
    config = receivers.get(name)
    if config is None:
        err.write(f"{rules_file}: no receiver {name!r}; defined: {sorted(receivers)}\n")
        return EXIT_USAGE
    if config.kind == "digest":
        deliver_to = getattr(config, "deliver_to", None)
        if deliver_to is None or deliver_to not in receivers:
            err.write(f"receiver {name!r} is a digest without a deliver_to receiver: nothing "
                      "to test\n")
            return EXIT_USAGE
        out.write(f"{name} is a digest receiver; testing its deliver_to {deliver_to!r}\n")
        name, config = deliver_to, receivers[deliver_to]
    try:
        notifier = build_notifier(name, config, settings, wall_clock=clock.now)
    except (MissingSecretError, ValueError) as exc:
        err.write(f"{exc}\n")
        return EXIT_USAGE
    now_ns = int(clock.now().timestamp() * 1e9)
    firing, resolved = _test_events(name, now_ns)
    runbook = "This is a test from spanwatch test-receiver; no action needed."
    kinds: tuple[tuple[AlertEvent, NotificationKind], ...] = (
        (firing, "trigger"), (resolved, "resolve"))
    trigger, resolve = (
        build_notification([event], receiver=name, kind=kind, metric="test_value",
                           runbook=runbook, trace_url_template=settings.trace_url_template,
                           is_test=True)
        for event, kind in kinds)
    out.write(f"testing receiver {name!r} ({config.kind}), dedup_key {trigger.dedup_key}\n")
    first = _send_with_retries(notifier, trigger, clock, deadline_s, out)
    if isinstance(first, Delivered) and first.message is not None:
        # Slack: resolve in the thread, and the root edited to resolved
        resolve = replace(resolve, thread=first.message, thread_root=trigger)
    second = _send_with_retries(notifier, resolve, clock, deadline_s, out)
    for n, delivery in ((trigger, first), (resolve, second)):
        if isinstance(delivery, Delivered):
            out.write(f"  {n.kind}: delivered: {delivery.detail}\n")
        else:
            out.write(f"  {n.kind}: FAILED: {delivery.why}\n")
    is_ok = isinstance(first, Delivered) and isinstance(second, Delivered)
    return EXIT_OK if is_ok else EXIT_FAILURE


def digest_command(settings: NotifySettings, rules_file: Path, *, receiver: str | None = None,
                   send: bool = False, receivers: Mapping[str, ReceiverLike] | None = None,
                   out: TextIO | None = None, err: TextIO | None = None,
                   clock: Clock | None = None, deliver_timeout_s: float = 60.0) -> int:
    """`--preview` (send=False): print the digest as it would be sent now (nothing is marked
    sent). `--send`: send it now: Markdown file, then through the outbox to `deliver_to`."""
    out, err = out or sys.stdout, err or sys.stderr
    clock = clock or SystemClock()
    receivers = _load(rules_file, receivers, err)
    if receivers is None:
        return EXIT_USAGE
    digests = {n: c for n, c in receivers.items() if c.kind == "digest"
               and (receiver is None or n == receiver)}
    if not digests:
        err.write(f"{rules_file}: no digest receiver"
                  + (f" named {receiver!r}" if receiver else "") + "\n")
        return EXIT_USAGE
    store = DigestStore(settings.digest_path)
    outbox = Outbox(settings.outbox_path) if send else None
    status = EXIT_OK
    try:
        for name, config in digests.items():
            scheduler = digest_scheduler(name, config, store, settings, submit=None,
                                         clock=clock)
            now = clock.now()
            if outbox is None:
                out.write(render_markdown(scheduler.report(now)))
                continue
            worker = None
            deliver_to = scheduler.deliver_to
            if deliver_to is not None and deliver_to in receivers:
                target = receivers[deliver_to]
                try:
                    notifier = build_notifier(deliver_to, target, settings,
                                              wall_clock=clock.now)
                except (MissingSecretError, ValueError) as exc:
                    err.write(f"{exc}\n")
                    return EXIT_USAGE
                worker = DeliveryWorker(notifier, outbox, clock=clock, budget=budget_of(target),
                                        lease=policy_lease(settings))
                scheduler.submit = lambda n: outbox.enqueue(n, clock.now())
            report = scheduler.send(now)
            out.write(f"digest {name} {report.day}: {len(report.items)} tier-3 alerts; "
                      f"markdown {settings.digest_dir / f'{name}-{report.day}.md'}\n")
            if worker is not None:
                status = max(status, _drain_report(worker, outbox, deliver_timeout_s, out))
    finally:
        store.close()
        if outbox is not None:
            outbox.close()
    return status


def _drain_report(worker: DeliveryWorker, outbox: Outbox, timeout_s: float, out: TextIO
                  ) -> int:
    pending = worker.drain(timeout_s)
    digest_rows = [r for r in outbox.rows(worker.receiver) if r.kind == "digest"]
    last = digest_rows[-1] if digest_rows else None
    if last is not None and last.status == "delivered":
        out.write(f"  delivered to {worker.receiver}: {last.answer}\n")
        return EXIT_OK
    why = last.last_error if last is not None else "not enqueued"
    state = "still pending (a running spanwatch will retry it)" if pending else "failed"
    out.write(f"  {state} at {worker.receiver}: {why}\n")
    return EXIT_FAILURE
