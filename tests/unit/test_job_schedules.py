"""Cron expressions as schedules read them, and the one declaration of beat's entries."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest

from backend.config import settings_from_env
from backend.jobs.cron import CronError, next_run, parse_cron, shortest_gap
from workers.celery_app import TASK_MODULES, create_celery_app, restore_sweep

AT = datetime(2026, 12, 1, 18, 25, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/5 * * * *", AT, datetime(2026, 12, 1, 18, 30, tzinfo=UTC)),  # strictly after
        ("*/5 * * * *", AT - timedelta(seconds=1), AT),
        ("25 18 * * *", AT + timedelta(seconds=30), datetime(2026, 12, 2, 18, 25, tzinfo=UTC)),
        ("0 3 * * 1-5", AT, datetime(2026, 12, 2, 3, 0, tzinfo=UTC)),  # a Wednesday
        ("0 0 29 2 *", AT, datetime(2028, 2, 29, tzinfo=UTC)),
    ],
)
def test_the_next_run_is_the_first_matching_minute_after(expression, after, expected):
    assert next_run(parse_cron(expression), after) == expected


@pytest.mark.parametrize(
    ("expression", "gap"),
    [
        ("* * * * *", timedelta(minutes=1)),
        ("*/5 * * * *", timedelta(minutes=5)),
        ("0 0,23 * * *", timedelta(hours=1)),  # 23:00 to 00:00, across midnight
        ("0,1 0 1 1 *", timedelta(minutes=1)),  # once a year, but twice in a row
        ("0 12 * * *", timedelta(days=1)),
    ],
)
def test_the_shortest_gap_between_runs(expression, gap):
    assert shortest_gap(parse_cron(expression), AT) == gap


@pytest.mark.parametrize(
    "expression", ["", "* * * *", "* * * * * *", "61 * * * *", "*/0 * * * *", "x * * * *"]
)
def test_what_is_not_a_five_field_cron(expression):
    with pytest.raises(CronError):
        parse_cron(expression)


def test_every_beat_entry_names_a_task_the_workers_have():
    app = create_celery_app(settings_from_env({}, redis_url="redis://localhost:1/0"))
    for module in TASK_MODULES:
        importlib.import_module(module)
    schedule = app.conf.beat_schedule
    assert {"requeue-jobs", "fire-schedules", "trim-outbox"} <= schedule.keys()
    assert {entry["task"] for entry in schedule.values()} <= set(app.tasks)


@pytest.mark.parametrize(
    ("visibility_timeout", "every"),
    [(2, 1), (30, 3), (60, 6), (600, 60), (3600, 100), (86_400, 100)],
)
def test_abandoned_messages_are_looked_for_every_tenth_of_the_timeout(visibility_timeout, every):
    sweep = restore_sweep(visibility_timeout)
    assert sweep["unacked_restore_interval"] * sweep["unacked_restore_throttle"] == every


def test_the_embedding_sweep_is_a_beat_entry_unless_turned_off():
    env = {"EMBEDDING_SWEEP_INTERVAL_SECONDS": "7"}
    settings = settings_from_env(env, redis_url="redis://localhost:1/0")
    entry = create_celery_app(settings).conf.beat_schedule["retry-failed-embeddings"]
    assert entry == {"task": "vectors.retry_failed", "schedule": 7.0}
    off = settings_from_env(
        {**env, "EMBEDDING_SWEEP_MAX_RETRIES": "0"}, redis_url="redis://localhost:1/0"
    )
    assert "retry-failed-embeddings" not in create_celery_app(off).conf.beat_schedule
