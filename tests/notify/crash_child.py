"""Child process of test_crash: enqueue notifications (after delivering a first batch, in
`deliver-first` mode), say so on stdout, then hang until the parent kills it with SIGKILL.

Usage: python -m tests.notify.crash_child OUTBOX PAGERDUTY_URL enqueue-only|deliver-first
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from pydantic import SecretStr

from notify.outbox import Outbox
from notify.pagerduty import PagerDutyNotifier
from notify.records import Notification
from notify.render import build_notification
from notify.worker import DeliveryWorker, SystemClock, TokenBucket
from tests.notify.conftest import ROUTING_KEY, make_event


def batch(services: tuple[str, ...]) -> list[Notification]:
    """A trigger then an update for each service, to the `pd` receiver."""
    out = []
    for service in services:
        labels = (("service", service),)
        out.append(build_notification([make_event(labels=labels)], receiver="pd",
                                      kind="trigger"))
        out.append(build_notification([make_event(labels=labels, previous="firing", at_s=60)],
                                      receiver="pd", kind="update"))
    return out


FIRST = ("a", "b")
SECOND = ("c", "d")


def main(argv: list[str]) -> int:
    path, url, mode = argv
    outbox = Outbox(Path(path))
    clock = SystemClock()
    if mode == "deliver-first":
        for n in batch(FIRST):
            outbox.enqueue(n, clock.now())
        worker = DeliveryWorker(PagerDutyNotifier("pd", SecretStr(ROUTING_KEY), url=url),
                                outbox, budget=TokenBucket(100, 100))
        if worker.drain(timeout_s=30) != 0:
            print("first batch not delivered", flush=True)
            return 1
        print("delivered", flush=True)
    for n in batch(SECOND):
        outbox.enqueue(n, clock.now())
    print("enqueued", flush=True)
    threading.Event().wait()  # hang: the parent kills us between enqueue and delivery
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
