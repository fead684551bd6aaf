"""Counts of events in a window, kept in Redis: the one mechanism behind per-key limits."""

from __future__ import annotations

from redis.asyncio import Redis


async def count_in_window(redis: Redis, key: str, seconds: int) -> tuple[int, int]:
    """Count one more event under ``key``, in a window that opens with its first event and
    lasts ``seconds``: the count so far, and the seconds until the window closes (at least 1,
    for Retry-After). One transaction, so concurrent callers each get their own count."""
    pipe = redis.pipeline(transaction=True)
    pipe.set(key, 0, ex=seconds, nx=True)
    pipe.incr(key)
    pipe.ttl(key)
    _, count, ttl = await pipe.execute()
    return int(count), max(int(ttl), 1)
