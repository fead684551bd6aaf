"""Outgoing webhooks: endpoints admins register, signed deliveries sent and retried by workers."""

DELIVER_TASK = "webhooks.deliver"
REQUEUE_TASK = "webhooks.requeue"
TRIM_TASK = "webhooks.trim"
