"""Tracing a process, and carrying each write's trace context through the outbox to the relay.

The outbox row is written by a trigger, in the writer's transaction, where no span is known.
So before a session flushes its changes it puts its span's ``traceparent`` in a
transaction-local setting (``litebase.traceparent``), which the trigger copies into the row
(migration 0016); the relay continues that trace when it hands the row on
(backend/events/relay.py). One extra statement per writing transaction, only while tracing is
on (docs/decisions/0013-tracing-through-the-outbox.md).
"""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy import event, text
from sqlalchemy.orm import Session

from backend.config import Settings
from backend.lib import tracing

TRACEPARENT_SETTING = "litebase.traceparent"
_SET_TRACEPARENT = text(f"SELECT set_config('{TRACEPARENT_SETTING}', :traceparent, true)")
# The traceparent this session's current transaction carries (set_config(..., true) ends
# with the transaction; after_begin forgets it).
_STAMPED = "litebase_traceparent"

Role = Literal["api", "worker", "beat"]


def start_tracing(settings: Settings, role: Role) -> bool:
    """Trace this process if OTEL_EXPORTER_OTLP_ENDPOINT is set (named OTEL_SERVICE_NAME, else
    ``litebase-<role>``), with every write stamped for the relay; whether it is traced."""
    service = settings.otel_service_name or f"litebase-{role}"
    if not tracing.start_tracing(settings.otel_exporter_otlp_endpoint, service):
        return False
    if not event.contains(Session, "before_flush", _stamp_transaction):
        event.listen(Session, "after_begin", _forget_stamp)
        event.listen(Session, "before_flush", _stamp_transaction)
    return True


def _forget_stamp(session: Session, *_: Any) -> None:
    session.info.pop(_STAMPED, None)


def _stamp_transaction(session: Session, *_: Any) -> None:
    traceparent = tracing.current_traceparent()
    if traceparent is None or session.info.get(_STAMPED) == traceparent:
        return
    # connection() begins the transaction first if need be (after_begin runs before this).
    session.connection().execute(_SET_TRACEPARENT, {"traceparent": traceparent})
    session.info[_STAMPED] = traceparent
