"""system.ping: proves a broker round trip through a real worker.
system.queue_metrics: each Celery queue's length, and their sum (``Queue`` = ``all``, what the
worker service scales on), as CloudWatch embedded-metric log lines."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from celery import shared_task

QUEUE_METRICS_TASK = "system.queue_metrics"


@shared_task(name="system.ping", bind=True, ignore_result=False)  # its caller reads the reply
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
def queue_metrics(self: Any) -> int:
    """Print the messages waiting in every queue (Redis broker) as EMF lines; their sum."""
    from workers.celery_app import QUEUES, LitebaseCelery

    app = self.app
    assert isinstance(app, LitebaseCelery)
    depths = {queue: int(app.redis().llen(queue)) for queue in QUEUES}
    total = sum(depths.values())
    namespace = app.settings.queue_metrics_namespace
    if namespace:
        now_ms = int(time.time() * 1000)
        for queue, depth in {**depths, "all": total}.items():
            print(queue_metrics_line(namespace, queue, depth, now_ms), file=sys.stdout, flush=True)
    return total
