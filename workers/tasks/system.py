"""system.ping: proves a broker round trip through a real worker.
system.queue_metrics: the Celery queue's length as a CloudWatch embedded-metric log line."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from celery import shared_task

QUEUE_METRICS_TASK = "system.queue_metrics"


@shared_task(name="system.ping", bind=True)
def ping(self: Any, payload: str = "pong") -> dict[str, str]:
    return {"payload": payload, "worker": str(self.request.hostname)}


def queue_metrics_line(namespace: str, queue: str, depth: int, now_ms: int) -> str:
    """A CloudWatch embedded metric format record: CloudWatch Logs turns it into the metric
    ``CeleryQueueDepth`` (dimension ``Queue``) in ``namespace``; no AWS API call needed."""
    return json.dumps(
        {
            "_aws": {
                "Timestamp": now_ms,
                "CloudWatchMetrics": [
                    {
                        "Namespace": namespace,
                        "Dimensions": [["Queue"]],
                        "Metrics": [{"Name": "CeleryQueueDepth", "Unit": "Count"}],
                    }
                ],
            },
            "Queue": queue,
            "CeleryQueueDepth": depth,
        },
        separators=(",", ":"),
    )


@shared_task(name=QUEUE_METRICS_TASK, bind=True)
def queue_metrics(self: Any, queue: str = "celery") -> int:
    """Print the number of messages waiting in ``queue`` (Redis broker) as an EMF line."""
    from workers.celery_app import LitebaseCelery

    app = self.app
    assert isinstance(app, LitebaseCelery)
    depth = int(app.redis().llen(queue))
    namespace = app.settings.queue_metrics_namespace
    if namespace:
        line = queue_metrics_line(namespace, queue, depth, int(time.time() * 1000))
        print(line, file=sys.stdout, flush=True)
    return depth
