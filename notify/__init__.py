"""Notify stage: alert events in, deliveries out (PagerDuty, Slack, digest, console, file).

`render.build_notification` turns AlertEvents into a content-free `Notification`; the
`Outbox` keeps it durably; a `DeliveryWorker` per receiver sends it through that receiver's
`Notifier` with retries and rate budgets; `notify.runtime.NotifyRuntime` assembles all of it
from config. This package root re-exports only the light records and functions, so importing
them does not load the HTTP clients.
"""

from notify.attribution import CostAggregate, CostAttribution, ModelUsage, attribute_cost
from notify.config import NotifySettings, ReceiverConfig, load_receivers
from notify.outbox import Outbox
from notify.records import (
    Delivered,
    Delivery,
    Failed,
    Notification,
    NotificationKind,
    Notifier,
    Retry,
)
from notify.render import build_notification, kind_of
from notify.worker import DeliveryService, DeliveryWorker

__all__ = [
    "CostAggregate",
    "CostAttribution",
    "Delivered",
    "Delivery",
    "DeliveryService",
    "DeliveryWorker",
    "Failed",
    "ModelUsage",
    "Notification",
    "NotificationKind",
    "Notifier",
    "NotifySettings",
    "Outbox",
    "ReceiverConfig",
    "Retry",
    "attribute_cost",
    "build_notification",
    "kind_of",
    "load_receivers",
]
