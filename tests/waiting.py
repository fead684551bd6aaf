"""Waiting in tests: poll a condition until it holds, with a deadline (STYLE.md on waiting).

A test never sleeps a fixed time hoping something happened: it asks, again and again, until the
answer is the one it wants, and fails, saying what it waited for, when the deadline passes.
``check`` returns the thing waited for (anything truthy), which the wait returns.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# What a failed wait says: a fixed text, or one made at the deadline (a log's tail, the last state).
What = str | Callable[[], object]


def _said(what: What) -> str:
    return what if isinstance(what, str) else str(what())


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    within: float = 30.0,
    every: float = 0.1,
    what: What = "the condition",
) -> T:
    """``check()`` (sync or async) until it is truthy; its value. ``AssertionError`` after
    ``within`` seconds, naming ``what`` (the last value is in the message when ``what`` is not)."""
    deadline = time.monotonic() + within
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {within} s: {_said(what)} (last: {found!r})")
        await asyncio.sleep(every)


def eventually_blocking(
    check: Callable[[], T],
    *,
    within: float = 30.0,
    every: float = 0.1,
    what: What = "the condition",
) -> T:
    """:func:`eventually` for synchronous tests and threads."""
    deadline = time.monotonic() + within
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {within} s: {_said(what)} (last: {found!r})")
        time.sleep(every)
