"""The queue-depth metric line is CloudWatch's embedded metric format."""

from __future__ import annotations

import json

from workers.tasks.system import queue_metrics_line


def test_queue_depth_is_an_embedded_metric_record():
    record = json.loads(queue_metrics_line("Litebase/litebase-prod", "celery", 42, 1_700_000))
    meta = record["_aws"]
    assert meta["Timestamp"] == 1_700_000
    (directive,) = meta["CloudWatchMetrics"]
    assert directive["Namespace"] == "Litebase/litebase-prod"
    assert directive["Dimensions"] == [["Queue"]]
    assert directive["Metrics"] == [{"Name": "CeleryQueueDepth", "Unit": "Count"}]
    # Every dimension and metric named in the directive is a top-level member.
    assert record["Queue"] == "celery" and record["CeleryQueueDepth"] == 42
