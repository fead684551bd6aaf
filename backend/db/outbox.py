"""The outbox: every committed change to a collection table becomes one row, in commit order.

A trigger (installed by the first migration) writes the row in the writer's transaction, so a
rolled-back write leaves nothing and a committed one always leaves exactly one. Each row keeps
the writing transaction's id (``xid``) so the relay can avoid the classic bigserial gap: it
reads only rows whose transaction is older than every transaction still in flight.
"""

from __future__ import annotations

import re

from sqlalchemy import BigInteger, Column, MetaData, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

OUTBOX_TABLE = "outbox"
NOTIFY_CHANNEL = "litebase_outbox"
CAPTURE_FUNCTION = "litebase_outbox_capture"

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _checked_identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain lower-case SQL identifier")
    return name


def attach_outbox_sql(table: str, collection: str | None = None) -> str:
    """DDL that makes every row change of ``table`` land in the outbox as ``collection``."""
    table = _checked_identifier(table)
    collection = _checked_identifier(collection or table)
    return (
        f"CREATE TRIGGER {table}_outbox AFTER INSERT OR UPDATE OR DELETE ON {table} "
        f"FOR EACH ROW EXECUTE FUNCTION {CAPTURE_FUNCTION}('{collection}')"
    )


def detach_outbox_sql(table: str) -> str:
    table = _checked_identifier(table)
    return f"DROP TRIGGER IF EXISTS {table}_outbox ON {table}"


# The outbox and the relay's positions as SQLAlchemy tables, for the code that reads them
# through SQL expressions (realtime's replay). Their own metadata: migrations create them, the
# app's models do not describe them.
_metadata = MetaData()
outbox_table = Table(
    OUTBOX_TABLE,
    _metadata,
    Column("id", BigInteger, primary_key=True),
    Column("collection", Text),
    Column("op", Text),
    Column("record_id", Text),
    Column("record", JSONB),
    Column("old", JSONB),
)
relay_state_table = Table(
    "outbox_relay_state",
    _metadata,
    Column("name", Text, primary_key=True),
    Column("last_id", BigInteger),
)
