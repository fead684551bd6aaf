"""Files records let go of are removed: by files.delete's work when a change releases them,
and by the sweeper for uploads no record took and deletions that were lost. Also: a JSON
change may drop or reorder a record's files, never name new ones."""

from __future__ import annotations

import msgspec
import psycopg
import pytest

from backend.app_collections.notes import notes
from backend.collections.spec import CollectionRegistry
from backend.files.cleanup import forget_files, sweep
from backend.files.storage import open_storage
from backend.lib.urls import libpq_database_url
from tests.integration.conftest import bearer

NOTES = "/collections/notes/records"


@pytest.fixture
def storage(settings):
    return open_storage(settings)


@pytest.fixture
def conn(database_url):
    with psycopg.connect(libpq_database_url(database_url), autocommit=True) as connection:
        yield connection


async def _bytes(data: bytes):
    yield data


async def _stored_note(client, sql, storage, headers, names, *, attached=True, age_hours=0):
    """A note holding ``names``, their objects and their ledger rows (as an upload leaves them)."""
    created = await client.post(NOTES, json={"title": "with files"}, headers=headers)
    note = created.json()
    sql("UPDATE notes SET attachments = %s WHERE id = %s", names, note["id"])
    for name in names:
        await storage.put(f"notes/{note['id']}/{name}", _bytes(b"%PDF-1.4 " + name.encode()))
        await storage.put(f"notes/{note['id']}/thumbs/100x100/{name}", _bytes(b"thumb"))
        sql(
            "INSERT INTO stored_files (id, collection, record_id, field, name, attached,"
            " created_at, updated_at) VALUES (gen_random_uuid(), 'notes', %s, 'attachments',"
            " %s, %s, now() - make_interval(hours => %s), now())",
            note["id"],
            name,
            attached,
            age_hours,
        )
    return note


def _objects(storage, note_id: str) -> list[str]:
    return sorted(found.key.split("/", 2)[2] for found in storage.list_sync(f"notes/{note_id}"))


async def test_a_json_change_drops_and_reorders_files_but_never_adds_one(
    client, sign_up, sql, storage
):
    alice = bearer((await sign_up())["access_token"])
    note = await _stored_note(client, sql, storage, alice, ["a.pdf", "b.pdf", "c.pdf"])
    url = f"{NOTES}/{note['id']}"

    kept = await client.patch(url, json={"attachments": ["c.pdf", "a.pdf"]}, headers=alice)
    assert kept.status_code == 200, kept.text
    assert kept.json()["attachments"] == ["c.pdf", "a.pdf"]

    for wrong in (["c.pdf", "other.pdf"], ["a.pdf", "a.pdf"]):
        refused = await client.patch(url, json={"attachments": wrong}, headers=alice)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == "attachments"

    named = await client.post(NOTES, json={"title": "x", "attachments": ["a.pdf"]}, headers=alice)
    assert named.status_code == 422
    assert named.json()["errors"][0]["field"] == "attachments"


async def test_forgetting_released_files_takes_their_objects_thumbs_and_rows(
    client, sign_up, sql, storage, conn
):
    alice = bearer((await sign_up())["access_token"])
    note = await _stored_note(client, sql, storage, alice, ["a.pdf", "b.pdf"])
    sql("UPDATE notes SET attachments = '{b.pdf}' WHERE id = %s", note["id"])

    # A stale message naming a file the record still holds changes nothing for it.
    assert forget_files(conn, storage, notes, note["id"], ["a.pdf", "b.pdf"]) == 1
    assert _objects(storage, note["id"]) == ["b.pdf", "thumbs/100x100/b.pdf"]
    assert sql("SELECT name FROM stored_files WHERE record_id = %s", note["id"]) == [("b.pdf",)]
    assert forget_files(conn, storage, notes, note["id"], ["a.pdf"]) == 1  # twice: no harm

    # A deleted record loses its whole folder.
    sql("DELETE FROM notes WHERE id = %s", note["id"])
    forget_files(conn, storage, notes, note["id"], ["b.pdf"])
    assert _objects(storage, note["id"]) == []
    assert sql("SELECT name FROM stored_files WHERE record_id = %s", note["id"]) == []


async def test_the_sweeper_removes_what_no_record_holds_and_keeps_the_rest(
    client, sign_up, sql, storage, conn, settings
):
    alice = bearer((await sign_up())["access_token"])
    registry = CollectionRegistry([notes])
    held = await _stored_note(client, sql, storage, alice, ["held.pdf"])
    # An upload whose record write never came: young (kept), and past the grace (removed).
    young = await _stored_note(client, sql, storage, alice, ["young.pdf"], attached=False)
    sql("UPDATE notes SET attachments = '{}' WHERE id = %s", young["id"])
    grace_hours = settings.files_pending_grace_seconds // 3600 + 1
    old = await _stored_note(
        client, sql, storage, alice, ["old.pdf"], attached=False, age_hours=grace_hours
    )
    sql("UPDATE notes SET attachments = '{}' WHERE id = %s", old["id"])
    # A release whose files.delete was lost, and a deletion whose was.
    released = await _stored_note(client, sql, storage, alice, ["gone.pdf", "kept.pdf"])
    sql("UPDATE notes SET attachments = '{kept.pdf}' WHERE id = %s", released["id"])
    deleted = await _stored_note(client, sql, storage, alice, ["x.pdf"])
    sql("DELETE FROM notes WHERE id = %s", deleted["id"])

    # FILES_SWEEP_BATCH bounds each step of a run: one unattached upload, one released file.
    one_at_a_time = msgspec.structs.replace(settings, files_sweep_batch=1)
    assert sweep(conn, storage, registry, one_at_a_time) == 2
    assert sweep(conn, storage, registry, settings) == 1
    assert _objects(storage, held["id"]) == ["held.pdf", "thumbs/100x100/held.pdf"]
    assert _objects(storage, young["id"]) == ["thumbs/100x100/young.pdf", "young.pdf"]
    assert _objects(storage, old["id"]) == []
    assert _objects(storage, released["id"]) == ["kept.pdf", "thumbs/100x100/kept.pdf"]
    assert _objects(storage, deleted["id"]) == []
    left = {row[0] for row in sql("SELECT name FROM stored_files")}
    assert left == {"held.pdf", "young.pdf", "kept.pdf"}
    assert sweep(conn, storage, registry, settings) == 0
