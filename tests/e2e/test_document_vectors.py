"""Documents into vectors through the shipped stack (`litebase api` with its relay, a real
Celery worker, embeddings from the fake OpenAI upstream on loopback): a PDF uploaded to a note
is found on its page by its owner's search and cited by their ask, never by another user; a PDF
with no text is failed with the reason; replacing and removing the file takes its chunks away."""

from __future__ import annotations

import json
import uuid
from contextlib import aclosing

import pytest

from tests.e2e.conftest import signed_up
from tests.files_support import pdf
from tests.waiting import eventually

pytestmark = pytest.mark.xdist_group("e2e")
NOTES = "/collections/notes/records"
SEARCH = "/collections/notes/search"
ASK = "/collections/notes/ask"
STATUS = "/collections/notes/embedding-status"


def _three_pages(sentence: str) -> bytes:
    return pdf(["Minutes of the meeting.", "Nothing decided.", sentence])


async def _with_pdf(client, name: str, data: bytes, title: str) -> dict:
    created = await client.post(
        NOTES,
        data={"data": json.dumps({"title": title})},
        files=[("attachments", (name, data, "application/pdf"))],
    )
    assert created.status_code == 201, created.text
    return created.json()


async def _hits(client, query: str, mode: str = "text") -> list[dict]:
    response = await client.post(SEARCH, json={"query": query, "mode": mode, "k": 10})
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_a_pdf_on_a_note_is_searchable_and_askable_by_its_owner_alone(stack):
    marker = f"k{uuid.uuid4().hex[:10]}"
    sentence = f"The lighthouse keeper {marker} counted seventeen ships before noon."
    async with (
        aclosing(await signed_up(stack)) as alice,
        aclosing(await signed_up(stack)) as bob,
        aclosing(await signed_up(stack, admin=True)) as admin,
    ):
        note = await _with_pdf(alice, "Minutes.pdf", _three_pages(sentence), "minutes")
        (name,) = note["attachments"]

        async def found():
            hits = await _hits(alice, f"lighthouse keeper {marker}")
            return [h for h in hits if h["record"]["id"] == note["id"]]

        (hit,) = await eventually(found, what="the PDF's page 3 was not found")
        assert (hit["file"], hit["page"]) == (name, 3)
        assert marker in hit["chunk"]["content"]
        (by_meaning,) = [
            h
            for h in await _hits(alice, f"lighthouse keeper {marker} ships", "vector")
            if h["record"]["id"] == note["id"]
        ]
        assert by_meaning["page"] == 3

        asked = await alice.post(
            ASK, json={"question": f"What did the lighthouse keeper {marker} count?", "k": 3}
        )
        assert asked.status_code == 200, asked.text
        cited = [c for c in asked.json()["citations"] if c.get("file") == name]
        assert cited and cited[0]["page"] == 3 and cited[0]["record_id"] == note["id"]

        # Bob's own PDF with the same words is embedded after Alice's: once he finds his, the
        # worker has long been through hers, and he must not find it.
        theirs = await _with_pdf(bob, "bob.pdf", _three_pages(sentence), "bob's")

        async def bob_found_his():
            return [h for h in await _hits(bob, marker) if h["record"]["id"] == theirs["id"]]

        await eventually(bob_found_his, what="Bob's own PDF was not embedded")
        for mode in ("text", "vector", "hybrid"):
            ids = {h["record"]["id"] for h in await _hits(bob, f"lighthouse {marker}", mode)}
            assert note["id"] not in ids, mode
        bob_asks = await bob.post(ASK, json={"question": f"lighthouse keeper {marker}", "k": 5})
        assert bob_asks.status_code == 200, bob_asks.text
        assert note["id"] not in {c["record_id"] for c in bob_asks.json()["citations"]}

        # A scanned PDF (no text layer) is failed with the reason, not silently empty; a
        # corrupt one with its own, and the worker goes on (the steps below need it).
        broken = b"%PDF-1.4\n" + b"not a PDF " * 40
        created = await alice.post(
            NOTES,
            data={"data": json.dumps({"title": "a scan"})},
            files=[
                ("attachments", ("scan.pdf", pdf(["", "", ""]), "application/pdf")),
                ("attachments", ("broken.pdf", broken, "application/pdf")),
            ],
        )
        assert created.status_code == 201, created.text
        scanned = created.json()

        async def failed():
            status = (await admin.get(STATUS)).json()
            found = [f for f in status["files"]["failures"] if f["record_id"] == scanned["id"]]
            return found if len(found) == 2 else None

        reasons = {f["file"]: f["reason"] for f in await eventually(failed, what="not failed")}
        scan_name, broken_name = scanned["attachments"]
        assert "no text layer" in reasons[scan_name]
        assert "could not be read" in reasons[broken_name]

        # Replaced: page 3 of the old file is no longer found, the new file is.
        other = f"r{uuid.uuid4().hex[:10]}"
        replaced = await alice.patch(
            f"{NOTES}/{note['id']}",
            data={"data": json.dumps({"attachments": []})},
            files=[("attachments", ("new.pdf", pdf([f"A new text {other}."]), "application/pdf"))],
        )
        assert replaced.status_code == 200, replaced.text

        async def swapped():
            new = await _hits(alice, other)
            old = await _hits(alice, f"lighthouse keeper {marker}")
            return new and not [h for h in old if h["record"]["id"] == note["id"]] and new

        (new_hit,) = await eventually(swapped, what="the replaced file's chunks stayed")
        assert (new_hit["file"], new_hit["page"]) == (replaced.json()["attachments"][0], 1)

        # Removed: its chunks go too.
        removed = await alice.patch(f"{NOTES}/{note['id']}", json={"attachments": []})
        assert removed.status_code == 200, removed.text

        async def gone():
            return not await _hits(alice, other)

        await eventually(gone, what="the removed file's chunks stayed")
