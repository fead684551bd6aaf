"""Documents into vectors against real Postgres + pgvector, files on the local disk and the
fake OpenAI upstream for embeddings: a PDF on a note is found by its page, cited by ask, kept
in step when files change, and failed with a reason when it has no text.

The worker's code runs in-process (``embed_with_files``, what ``vectors.embed`` does) so each
step is explicit; tests/e2e/test_document_vectors.py runs the same through the relay and a real
Celery worker.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import msgspec
import psycopg
import pytest

from backend.collections.spec import CollectionRegistry
from backend.config import Settings
from backend.lib.urls import libpq_database_url
from backend.vectors.documents import embed_files, record_file_failures
from backend.vectors.embedders import ProviderError
from backend.vectors.sync import embed_records, maybe_activate
from backend.vectors.versions import ensure_versions
from tests.files_support import pdf
from tests.integration.conftest import bearer
from workers.tasks.vectors import file_reader

NOTES = "/collections/notes/records"
SEARCH = "/collections/notes/search"
STATUS = "/collections/notes/embedding-status"
ASK = "/collections/notes/ask"


@pytest.fixture
def settings(settings, upstream) -> Settings:
    """Embeddings through the openai provider against the fake upstream (and the gateway's
    chat calls for ask); one try per call, so a failure is seen at once."""
    return msgspec.structs.replace(
        settings,
        embedding_provider="openai",
        embedding_base_url=upstream.base_url,
        embedding_api_key="sk-test",
        embedding_model="fake-embed",
        embedding_dimensions=64,
        embedding_retries=0,
        openai_api_key="sk-test",
        openai_base_url=upstream.base_url,
    )


def _notes():
    collection = CollectionRegistry.discover().get("notes")
    assert collection is not None and collection.embed is not None
    return collection


def _embed_sync(settings: Settings, ids: list[str] | None) -> int:
    collection = _notes()
    fresh = 0
    with psycopg.connect(libpq_database_url(settings.database_url or ""), autocommit=True) as conn:
        live, _ = ensure_versions(conn, collection, settings)
        if ids is None:
            ids = [r[0] for r in conn.execute("SELECT id::text FROM notes").fetchall()]
        for version in live:
            embed_records(conn, collection, version, ids, settings)
            fresh += embed_files(conn, collection, version, ids, settings, file_reader(settings))
        maybe_activate(conn, collection, settings)
    return fresh


async def embed_with_files(settings: Settings, ids: list[str] | None = None) -> int:
    """What vectors.embed does for these records (all by default): fields, then documents."""
    return await asyncio.to_thread(_embed_sync, settings, ids)


@pytest.fixture
async def alice(sign_up):
    return bearer((await sign_up())["access_token"])


@pytest.fixture
async def bob(sign_up):
    return bearer((await sign_up())["access_token"])


def _pdf_part(name: str, data: bytes) -> tuple[str, tuple[str, bytes, str]]:
    return ("attachments", (name, data, "application/pdf"))


async def _note_with(client, headers, files, **fields):
    response = await client.post(
        NOTES,
        data={"data": json.dumps({"title": "a note", **fields})},
        files=files,
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


async def _search(client, headers, **body):
    response = await client.post(SEARCH, json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def _status(client, admin):
    response = await client.get(STATUS, headers=admin)
    assert response.status_code == 200, response.text
    return response.json()


def _report(marker: str) -> bytes:
    return pdf(
        [
            "Quarterly report. Revenue grew in every region.",
            "Costs were flat; hiring paused.",
            f"The grey heron {marker} lands at dawn beside the old quarry.",
        ]
    )


async def test_a_pdf_on_a_note_is_found_on_its_page_by_its_owner_alone(
    client, alice, bob, admin, settings
):
    marker = f"m{uuid.uuid4().hex[:10]}"
    note = await _note_with(client, alice, [_pdf_part("Report.pdf", _report(marker))])
    (name,) = note["attachments"]
    status = await _status(client, admin)
    assert status["files"] == {"pending": 1, "failed": 0, "done": 0, "failures": []}
    one = await client.get(STATUS, params={"record": note["id"]}, headers=admin)
    assert [f["status"] for f in one.json()["files"]["record"]] == ["pending"]
    assert await embed_with_files(settings) > 0
    for mode in ("text", "vector", "hybrid"):
        items = await _search(client, alice, query=f"heron {marker} quarry", mode=mode, k=3)
        assert items, mode
        top = items[0]
        assert top["record"]["id"] == note["id"], mode
        assert (top["file"], top["page"]) == (name, 3), mode
        assert marker in top["chunk"]["content"]
    # A hit on the note's own fields names no file and no page.
    (own,) = await _search(client, alice, query="a note", mode="text", k=1)
    assert "file" not in own and "page" not in own
    # Another user never finds it, in any mode.
    for mode in ("text", "vector", "hybrid"):
        found = await _search(client, bob, query=f"heron {marker} quarry", mode=mode, k=10)
        assert note["id"] not in {item["record"]["id"] for item in found}, mode
    status = await _status(client, admin)
    assert status["files"] == {"pending": 0, "failed": 0, "done": 1, "failures": []}
    assert status["pending"] == 0 and status["done"] == 1
    one = await client.get(STATUS, params={"record": note["id"]}, headers=admin)
    (state,) = one.json()["files"]["record"]
    assert (state["file"], state["status"], state["pages"], state["reason"]) == (
        name,
        "done",
        3,
        None,
    )
    assert state["chunks"] >= 1
    # Embedding again reads nothing anew: the file is done for this version.
    assert await embed_with_files(settings) == 0


async def test_ask_cites_the_file_and_the_page(client, alice, bob, settings, upstream):
    marker = f"m{uuid.uuid4().hex[:10]}"
    note = await _note_with(client, alice, [_pdf_part("report.pdf", _report(marker))])
    await embed_with_files(settings)
    response = await client.post(
        ASK, json={"question": f"Where does the heron {marker} land?", "k": 2}, headers=alice
    )
    assert response.status_code == 200, response.text
    citations = response.json()["citations"]
    cited = [c for c in citations if c.get("file") == note["attachments"][0]]
    assert cited and cited[0]["page"] == 3 and marker in cited[0]["chunk"]["content"]
    assert cited[0]["record_id"] == note["id"]
    # The model was shown the passage's file and page too (the fake echoes the prompt back).
    (call,) = [c for c in upstream.state.calls_with(marker) if c.path.endswith("/completions")]
    shown = f"[{cited[0]['n']}] ({note['attachments'][0]}, page 3) {cited[0]['chunk']['content']}"
    assert shown in call.body["messages"][-1]["content"]
    theirs = await client.post(
        ASK, json={"question": f"Where does the heron {marker} land?", "k": 2}, headers=bob
    )
    assert theirs.status_code == 200, theirs.text
    assert all(c["record_id"] != note["id"] for c in theirs.json()["citations"])
    assert "old quarry" not in theirs.text  # the page's text never reached Bob's prompt


async def test_a_pdf_without_text_and_a_corrupt_one_fail_with_their_reasons(
    client, alice, admin, settings, upstream
):
    scanned = pdf(["", ""])
    corrupt = b"%PDF-1.4\n" + b"this is not a PDF body " * 20
    note = await _note_with(
        client,
        alice,
        [_pdf_part("scan.pdf", scanned), _pdf_part("broken.pdf", corrupt)],
        body="fields still embed",
    )
    scan_name, broken_name = note["attachments"]
    await embed_with_files(settings)
    status = await _status(client, admin)
    files = status["files"]
    assert (files["pending"], files["failed"], files["done"]) == (0, 2, 0)
    reasons = {f["file"]: f["reason"] for f in files["failures"]}
    assert "no text layer" in reasons[scan_name]
    assert "could not be read" in reasons[broken_name]
    assert all(f["record_id"] == note["id"] for f in files["failures"])
    # One record's documents, one by one.
    one = await client.get(STATUS, params={"record": note["id"]}, headers=admin)
    assert one.status_code == 200, one.text
    by_file = {f["file"]: f for f in one.json()["files"]["record"]}
    assert by_file[scan_name]["status"] == "failed" and by_file[broken_name]["status"] == "failed"
    assert "no text layer" in by_file[scan_name]["reason"]
    wrong = await client.get(STATUS, params={"record": "not-a-uuid"}, headers=admin)
    assert wrong.status_code in (400, 422) and "record" in wrong.text
    # The record's own fields are embedded all the same, and found.
    assert await _search(client, alice, query="fields still embed", mode="text")
    # A failed document is not read again on the record's next change (its bytes never change).
    requests = upstream.state.requests
    await client.patch(f"{NOTES}/{note['id']}", json={"body": "changed words"}, headers=alice)
    await embed_with_files(settings)
    assert (await _status(client, admin))["files"]["failed"] == 2
    assert upstream.state.requests == requests + 1  # the new body alone


async def test_the_status_lists_at_most_the_configured_failures(client, alice, admin, settings):
    app_settings = msgspec.structs.replace(settings, embedding_status_max_failed_files=1)
    from litestar.testing import AsyncTestClient

    from backend.app import create_app

    await _note_with(client, alice, [_pdf_part("a.pdf", pdf([""])), _pdf_part("b.pdf", pdf([""]))])
    await embed_with_files(settings)
    async with AsyncTestClient(create_app(app_settings)) as limited:
        files = (await limited.get(STATUS, headers=admin)).json()["files"]
    assert files["failed"] == 2 and len(files["failures"]) == 1


async def test_replacing_and_removing_files_forgets_their_chunks(
    client, alice, admin, settings, sql
):
    heron, otter = f"h{uuid.uuid4().hex[:10]}", f"o{uuid.uuid4().hex[:10]}"
    note = await _note_with(client, alice, [_pdf_part("one.pdf", pdf([f"A heron {heron}."]))])
    await embed_with_files(settings)
    assert await _search(client, alice, query=heron, mode="text")
    # Replaced: the old file's chunks go, the new one's come.
    replaced = await client.patch(
        f"{NOTES}/{note['id']}",
        data={"data": json.dumps({"attachments": []})},
        files=[_pdf_part("two.pdf", pdf(["page one", f"An otter {otter}."]))],
        headers=alice,
    )
    assert replaced.status_code == 200, replaced.text
    (new_name,) = replaced.json()["attachments"]
    await embed_with_files(settings)
    assert await _search(client, alice, query=heron, mode="text") == []
    (hit,) = await _search(client, alice, query=otter, mode="text")
    assert (hit["file"], hit["page"]) == (new_name, 2)
    files = sql(
        "SELECT DISTINCT file FROM notes_chunks WHERE record_id = %s AND file <> ''", note["id"]
    )
    assert files == [(new_name,)]
    # Removed: nothing of it is left, in chunks or in state.
    removed = await client.patch(f"{NOTES}/{note['id']}", json={"attachments": []}, headers=alice)
    assert removed.status_code == 200, removed.text
    await embed_with_files(settings)
    assert await _search(client, alice, query=otter, mode="text") == []
    assert sql("SELECT count(*) FROM notes_chunks WHERE file <> ''") == [(0,)]
    assert sql("SELECT count(*) FROM embedding_files") == [(0,)]
    assert (await _status(client, admin))["files"]["done"] == 0
    # The record deleted: its documents' state goes with it.
    again = await _note_with(client, alice, [_pdf_part("three.pdf", pdf(["kept words"]))])
    await embed_with_files(settings)
    assert sql("SELECT count(*) FROM embedding_files") == [(1,)]
    deleted = await client.delete(f"{NOTES}/{again['id']}", headers=alice)
    assert deleted.status_code == 204
    await embed_with_files(settings, [again["id"]])
    assert sql("SELECT count(*) FROM embedding_files") == [(0,)]
    assert sql("SELECT count(*) FROM notes_chunks WHERE file <> ''") == [(0,)]


async def test_a_task_that_read_a_file_before_it_was_removed_does_not_bring_it_back(
    client, alice, settings, sql
):
    marker = f"m{uuid.uuid4().hex[:10]}"
    note = await _note_with(client, alice, [_pdf_part("late.pdf", pdf([f"late {marker}"]))])
    removed = False

    def read_then_remove(collection, record_id, name):
        nonlocal removed
        data = b"".join(file_reader(settings)(collection, record_id, name))
        if not removed:  # the user removes the file while the worker reads it
            with psycopg.connect(libpq_database_url(settings.database_url or "")) as conn:
                conn.execute("UPDATE notes SET attachments = '{}' WHERE id = %s", (record_id,))
            removed = True
        return [data]

    def run() -> None:
        collection = _notes()
        with psycopg.connect(
            libpq_database_url(settings.database_url or ""), autocommit=True
        ) as conn:
            live, _ = ensure_versions(conn, collection, settings)
            for version in live:
                embed_files(conn, collection, version, [note["id"]], settings, read_then_remove)

    await asyncio.to_thread(run)
    assert removed
    assert sql("SELECT count(*) FROM notes_chunks WHERE file <> ''") == [(0,)]
    assert sql("SELECT count(*) FROM embedding_files") == [(0,)]
    assert await _search(client, alice, query=marker, mode="text") == []


async def test_a_provider_failure_fails_the_file_for_a_later_retry(client, alice, admin, settings):
    marker = f"m{uuid.uuid4().hex[:10]}"
    note = await _note_with(
        client, alice, [_pdf_part("flaky.pdf", pdf([f"[[500-once]] flaky {marker}"]))]
    )

    def first_try() -> None:
        collection = _notes()
        with psycopg.connect(
            libpq_database_url(settings.database_url or ""), autocommit=True
        ) as conn:
            live, _ = ensure_versions(conn, collection, settings)
            (version,) = live
            embed_records(conn, collection, version, [note["id"]], settings)
            with pytest.raises(ProviderError):
                embed_files(
                    conn, collection, version, [note["id"]], settings, file_reader(settings)
                )
            # What the task does once its retries are spent.
            record_file_failures(conn, collection, version, [note["id"]], "the provider is down")

    await asyncio.to_thread(first_try)
    files = (await _status(client, admin))["files"]
    assert files["failed"] == 1 and "provider" in files["failures"][0]["reason"]
    await embed_with_files(settings, [note["id"]])  # the sweep sends the record again
    files = (await _status(client, admin))["files"]
    assert (files["failed"], files["done"]) == (0, 1)
    (hit,) = await _search(client, alice, query=f"flaky {marker}", mode="text")
    assert hit["page"] == 1


async def test_reindex_embeds_the_documents_too(client, alice, settings):
    """`litebase reindex` and the reindex job run sync.reindex with the storage reader."""
    from backend.vectors.sync import reindex

    marker = f"m{uuid.uuid4().hex[:10]}"
    note = await _note_with(client, alice, [_pdf_part("r.pdf", pdf(["one", f"two {marker}"]))])

    def run():
        with psycopg.connect(
            libpq_database_url(settings.database_url or ""), autocommit=True
        ) as conn:
            return reindex(conn, _notes(), settings, read_file=file_reader(settings))

    done = await asyncio.to_thread(run)
    assert (done.pending, done.failed) == (0, 0)
    (hit,) = await _search(client, alice, query=marker, mode="text")
    assert (hit["record"]["id"], hit["page"]) == (note["id"], 2)
