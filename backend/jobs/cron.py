"""Cron expressions for schedules: parsed and stepped by Celery's own crontab (in UTC).

Five fields, ``minute hour day-of-month month day-of-week`` (``*/15 * * * *``, ``0 3 * * 1-5``).
Celery's crontab requires a day to match both day fields when both are restricted (classic
cron accepts either).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from celery.schedules import crontab

# How many future runs the minimum-interval check looks at: gaps in a cron expression repeat
# with its hours, days and months, which this many runs cover for any schedule rare enough
# to pass (1000 runs 5 minutes apart span more than three days).
RUNS_CHECKED = 1000


class CronError(ValueError):
    """Not a five-field cron expression Litebase can run."""


def parse_cron(expression: str) -> crontab:
    fields = expression.split()
    if len(fields) != 5:
        raise CronError("needs five fields: minute hour day-of-month month day-of-week")
    try:
        return crontab.from_string(" ".join(fields))
    except (ValueError, IndexError) as exc:
        raise CronError(str(exc) or "is not a cron expression") from None


def next_run(schedule: crontab, after: datetime) -> datetime:
    """The first time strictly after ``after`` (to the minute) at which the schedule fires."""
    # Celery reads its argument as the last run and answers the next one after it: a whole
    # minute after ``start``, so after ``after`` too.
    start = after.astimezone(UTC).replace(second=0, microsecond=0)
    last_run_at, delta, _ = schedule.remaining_delta(start, tz=UTC)
    due: datetime = last_run_at + delta
    return due


def shortest_gap(schedule: crontab, start: datetime, runs: int = RUNS_CHECKED) -> timedelta:
    """The least time between two consecutive runs among the next ``runs``."""
    previous = next_run(schedule, start)
    gap = timedelta.max
    for _ in range(runs - 1):
        following = next_run(schedule, previous)
        gap = min(gap, following - previous)
        if gap <= timedelta(minutes=1):  # the least a cron can do
            break
        previous = following
    return gap
