"""The realtime protocol's frames (DESIGN, "Realtime protocol"): JSON text, tagged by `type`."""

from __future__ import annotations

from typing import Any

import msgspec

ChannelName = str


class AuthFrame(msgspec.Struct, tag="auth", tag_field="type", forbid_unknown_fields=True):
    token: str


class SubscribeFrame(msgspec.Struct, tag="subscribe", tag_field="type", forbid_unknown_fields=True):
    id: str
    channel: ChannelName
    filter: str | None = None
    since: int | None = None
    # Rooms: receive your own broadcasts too (sent as "self").
    echo: bool = msgspec.field(default=False, name="self")


class UnsubscribeFrame(
    msgspec.Struct, tag="unsubscribe", tag_field="type", forbid_unknown_fields=True
):
    id: str


class PingFrame(msgspec.Struct, tag="ping", tag_field="type", forbid_unknown_fields=True):
    pass


class BroadcastFrame(msgspec.Struct, tag="broadcast", tag_field="type", forbid_unknown_fields=True):
    channel: ChannelName
    event: str
    payload: Any = None


class PresenceFrame(msgspec.Struct, tag="presence", tag_field="type", forbid_unknown_fields=True):
    channel: ChannelName
    state: dict[str, Any]


ClientFrame = (
    AuthFrame | SubscribeFrame | UnsubscribeFrame | PingFrame | BroadcastFrame | PresenceFrame
)
decode_client_frame = msgspec.json.Decoder(ClientFrame).decode
encode = msgspec.json.Encoder().encode


def error_frame(code: str, message: str, ref: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    return frame


class ChangeEvent(msgspec.Struct, frozen=True):
    """What the relay publishes on ``collection:<name>``, for every API process."""

    channel: str
    id: int
    op: str
    record_id: str
    record: dict[str, Any] | None
    old: dict[str, Any] | None


decode_change = msgspec.json.Decoder(ChangeEvent).decode

# WebSocket close codes.
CLOSE_UNAUTHORIZED = 4401  # no, bad or revoked credentials
CLOSE_TOO_SLOW = 4008  # the client does not read fast enough
CLOSE_POLICY = 1008  # too many frames, or a frame of the wrong shape too often
CLOSE_TOO_BIG = 1009
