"""Sending an answer over a realtime channel instead of the response (``channel`` in an ask).

``realtime_target`` checks that the caller may subscribe to the channel they name (their own
``user:<id>``, or a room of their active org) and gives its internal name;
``answer_over_channel`` publishes the answer's deltas and then the answer there as
``broadcast`` frames; ``BackgroundSlots`` bounds how many such answers one process sends at
once (``ASK_MAX_BACKGROUND``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
from litestar.channels import ChannelsPlugin

from backend.ai.rag import Answer
from backend.ai.runner import Delta
from backend.config import Settings
from backend.errors import DomainError, Forbidden, Invalid, TooMany
from backend.identity import Principal
from backend.problems import status_of
from backend.realtime.protocol import encode
from backend.realtime.rooms import room_channel, user_channel

log = logging.getLogger(__name__)


async def answer_over_channel(
    channels: ChannelsPlugin,
    channel: str,
    ask_id: str,
    events: AsyncGenerator[Delta | Answer, None],
) -> None:
    """Publish an answer's deltas and then the answer on a realtime channel (``user:<id>`` or
    a room), as ``broadcast`` frames: ``ask.delta``, then ``ask.done`` or ``ask.error``."""

    async def publish(event: str, payload: dict[str, Any]) -> None:
        # As push_to_user sends: from no user, and an origin no socket has, so that every
        # subscriber of the channel (each socket of a user, everyone in a room) receives it.
        message = {"kind": "broadcast", "event": event, "payload": payload, "from": None}
        message["origin"] = ""
        await channels.wait_published(encode(message), [channel])

    try:
        async for event in events:
            if isinstance(event, Delta):
                await publish("ask.delta", {"ask_id": ask_id, "content": event.content})
            else:
                await publish("ask.done", {"ask_id": ask_id, **msgspec.to_builtins(event)})
    except DomainError as exc:
        await publish(
            "ask.error", {"ask_id": ask_id, "status": status_of(exc), "detail": exc.detail}
        )
    except Exception:
        log.exception("an answer over a channel failed", extra={"ask_id": ask_id})
        await publish(
            "ask.error",
            {"ask_id": ask_id, "status": 500, "detail": "The answer broke off; see the server log"},
        )
    finally:
        await events.aclose()


class BackgroundSlots:
    """How many asks answer over a channel at once in this process (ASK_MAX_BACKGROUND)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0

    def take(self) -> None:
        if self.running >= self.limit:
            raise TooMany(
                "Too many answers are being sent over channels; retry shortly",
                code="too_many_asks",
                headers={"Retry-After": "1"},
            )
        self.running += 1

    def give_back(self) -> None:
        self.running -= 1


def realtime_target(channel: str, principal: Principal, settings: Settings) -> str:
    """The internal channel for ``channel``, which the caller must be allowed to subscribe to."""

    def refused(message: str) -> Invalid:
        return Invalid(
            "The channel is not one an answer can be sent to",
            errors=[{"field": "channel", "message": message, "source": "body"}],
        )

    if not settings.realtime_enabled:
        raise refused("realtime is turned off (REALTIME_ENABLED)")
    kind, _, name = channel.partition(":")
    if kind == "user":
        if name != str(principal.user_id):
            raise Forbidden("user:<id> is for that user only", code="forbidden")
        return user_channel(name)
    if kind == "room":
        if principal.org_id is None or not name:
            raise Forbidden("Rooms are shared within your active org", code="forbidden")
        return room_channel(principal.org_id, name)
    raise refused("must be user:<your id> or room:<name>")
