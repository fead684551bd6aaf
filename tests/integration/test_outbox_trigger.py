"""The outbox trigger: one row per committed change, none for a rollback, in the writer's xact."""

import psycopg
import pytest

from backend.db.outbox import NOTIFY_CHANNEL, attach_outbox_sql, detach_outbox_sql
from backend.lib.urls import libpq_database_url


@pytest.fixture
def conn(database_url):
    with psycopg.connect(libpq_database_url(database_url), autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE gadgets (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text)"
        )
        connection.execute(attach_outbox_sql("gadgets"))
        yield connection


def _outbox(conn):
    return conn.execute(
        "SELECT collection, op, record_id, record, old, xid::text::bigint FROM outbox ORDER BY id"
    ).fetchall()


def test_each_committed_change_leaves_one_row(conn):
    gadget_id = conn.execute("INSERT INTO gadgets (name) VALUES ('a') RETURNING id").fetchone()[0]
    conn.execute("UPDATE gadgets SET name = 'b' WHERE id = %s", (gadget_id,))
    conn.execute("DELETE FROM gadgets WHERE id = %s", (gadget_id,))
    rows = _outbox(conn)
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("gadgets", "insert", str(gadget_id)),
        ("gadgets", "update", str(gadget_id)),
        ("gadgets", "delete", str(gadget_id)),
    ]
    insert, update, delete = rows
    assert insert[3]["name"] == "a" and insert[4] is None
    assert update[3]["name"] == "b" and update[4]["name"] == "a"
    assert delete[3] is None and delete[4]["name"] == "b"
    assert all(r[5] > 0 for r in rows)


def test_a_rolled_back_write_leaves_nothing(conn):
    with pytest.raises(RuntimeError), conn.transaction():
        conn.execute("INSERT INTO gadgets (name) VALUES ('ghost')")
        raise RuntimeError("roll back")
    assert _outbox(conn) == []


def test_rows_carry_the_writing_transaction_id(conn):
    with conn.transaction():
        xid = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0]
        conn.execute("INSERT INTO gadgets (name) VALUES ('x'), ('y')")
    assert [r[5] for r in _outbox(conn)] == [xid, xid]


def test_the_collection_name_can_differ_from_the_table(conn):
    conn.execute(detach_outbox_sql("gadgets"))
    conn.execute(attach_outbox_sql("gadgets", "widgets"))
    conn.execute("INSERT INTO gadgets (name) VALUES ('w')")
    assert [r[0] for r in _outbox(conn)] == ["widgets"]


def test_a_commit_notifies_listeners_once_per_collection(conn, database_url):
    with psycopg.connect(libpq_database_url(database_url), autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        conn.execute("INSERT INTO gadgets (name) SELECT 'n' || g FROM generate_series(1, 50) g")
        notes = list(listener.notifies(timeout=2, stop_after=1))
        assert [n.payload for n in notes] == ["gadgets"]
        assert list(listener.notifies(timeout=0.3)) == []


def test_rows_carry_the_traceparent_their_transaction_set_and_only_it(conn):
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with conn.transaction():
        conn.execute("SELECT set_config('litebase.traceparent', %s, true)", (traceparent,))
        conn.execute("INSERT INTO gadgets (name) VALUES ('traced')")
    # The setting ended with its transaction (the session now reads ''), and a session that
    # never set it reads null: neither leaves a traceparent.
    conn.execute("INSERT INTO gadgets (name) VALUES ('after')")
    with psycopg.connect(conn.info.dsn, autocommit=True) as other:
        other.execute("INSERT INTO gadgets (name) VALUES ('elsewhere')")
    rows = conn.execute("SELECT record ->> 'name', traceparent FROM outbox ORDER BY id").fetchall()
    assert rows == [("traced", traceparent), ("after", None), ("elsewhere", None)]
