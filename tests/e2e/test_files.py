"""Files in the shipped stack (API and worker as processes, the relay): file changes reach
realtime subscribers and webhooks as record changes, and a record's files leave storage when
the record lets go of them — through the outbox, the relay and a worker's files.delete."""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import aclosing
from pathlib import Path

import pytest
import websockets

from tests.e2e.conftest import signed_up, sql
from tests.files_support import PDF, png
from tests.waiting import eventually
from tests.webhook_receiver import webhook_receiver

pytestmark = pytest.mark.xdist_group("e2e")
NOTES = "/collections/notes/records"


def _stored(stack, note_id: str) -> list[str]:
    folder = Path(stack.env["FILES_LOCAL_DIR"]) / "notes" / note_id
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def test_a_records_files_leave_storage_when_it_lets_go_of_them(stack):
    async with aclosing(await signed_up(stack)) as alice:
        created = await alice.post(
            NOTES,
            data={"data": json.dumps({"title": "with files"})},
            files=[
                ("attachments", ("a.pdf", PDF, "application/pdf")),
                ("attachments", ("b.png", png(), "image/png")),
            ],
        )
        assert created.status_code == 201, created.text
        note = created.json()
        first, second = note["attachments"]
        assert _stored(stack, note["id"]) == sorted([first, second])

        # An update drops one: the relay hands the change on, a worker deletes its object.
        kept = await alice.patch(f"{NOTES}/{note['id']}", json={"attachments": [second]})
        assert kept.status_code == 200, kept.text
        await eventually(lambda: _stored(stack, note["id"]) == [second], what="a.pdf stayed")
        assert sql(stack, "SELECT name FROM stored_files WHERE record_id = %s", note["id"]) == [
            (second,)
        ]

        # Deleting the record takes the rest, folder and all.
        assert (await alice.delete(f"{NOTES}/{note['id']}")).status_code == 204
        await eventually(lambda: _stored(stack, note["id"]) == [], what="the folder stayed")
        await eventually(
            lambda: (
                sql(stack, "SELECT count(*) FROM stored_files WHERE record_id = %s", note["id"])
                == [(0,)]
            ),
            what="the ledger rows stayed",
        )


async def test_file_changes_reach_realtime_and_webhooks_as_record_changes(stack):
    async with (
        aclosing(await signed_up(stack)) as alice,
        aclosing(await signed_up(stack, admin=True)) as admin,
    ):
        with webhook_receiver() as receiver:
            hook = await admin.post("/webhooks", json={"url": receiver.url, "collection": "notes"})
            assert hook.status_code == 201, hook.text
            receiver.secrets.append(hook.json()["secret"])
            try:
                url = stack.base_url.replace("http", "ws") + "/realtime"
                token = alice.headers["Authorization"].removeprefix("Bearer ")
                async with websockets.connect(url) as socket:
                    await socket.send(json.dumps({"type": "auth", "token": token}))
                    assert json.loads(await socket.recv())["type"] == "ready"
                    await socket.send(
                        json.dumps({"type": "subscribe", "id": "n", "channel": "collection:notes"})
                    )
                    assert json.loads(await socket.recv())["type"] == "subscribed"
                    marker = uuid.uuid4().hex[:8]
                    created = await alice.post(
                        NOTES,
                        data={"data": json.dumps({"title": marker})},
                        files=[("attachments", ("a.pdf", PDF, "application/pdf"))],
                    )
                    assert created.status_code == 201, created.text
                    note = created.json()

                    async def event():
                        while True:
                            frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
                            if frame.get("record", {}).get("title") == marker:
                                return frame

                    frame = await event()
                    assert frame["op"] == "insert"
                    assert frame["record"]["attachments"] == note["attachments"]

                def delivered():
                    return [
                        item.payload
                        for item in receiver.accepted().values()
                        if item.payload["record_id"] == note["id"]
                    ]

                (payload,) = await eventually(delivered, what="no webhook delivery")
                assert payload["op"] == "insert"
                assert payload["record"]["attachments"] == note["attachments"]
            finally:
                await admin.delete(f"/webhooks/{hook.json()['id']}")


async def test_an_upload_broken_off_leaves_nothing(stack):
    async with aclosing(await signed_up(stack)) as alice:
        user_id = (await alice.get("/auth/me")).json()["id"]
        boundary = "cutoffboundary"
        head = (
            (
                f"--{boundary}\r\nContent-Disposition: form-data; name=data\r\n\r\n"
                '{"title": "cut off"}\r\n'
                f"--{boundary}\r\nContent-Disposition: form-data; name=attachments;"
                ' filename="a.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
            ).encode()
            + PDF
            + b"%" * 200_000
        )
        host, port = stack.base_url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            (
                f"POST {NOTES} HTTP/1.1\r\nHost: {host}\r\n"
                f"Authorization: {alice.headers['Authorization']}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                f"Content-Length: {len(head) + 5_000_000}\r\n\r\n"
            ).encode()
            + head
        )
        await writer.drain()

        def pending():
            return sql(
                stack,
                "SELECT record_id::text, name FROM stored_files"
                " WHERE uploaded_by = %s AND NOT attached",
                user_id,
            )

        # The upload has begun (its ledger row is committed before its bytes go)...
        ((record_id, name),) = await eventually(pending, what="the upload never began")
        writer.close()  # ...and the client hangs up part way: its row and bytes go.
        await eventually(lambda: pending() == [], what="the broken upload's row stayed")
        stored = Path(stack.env["FILES_LOCAL_DIR"]) / "notes" / record_id / name
        assert not stored.exists()
        assert sql(stack, "SELECT count(*) FROM notes WHERE owner = %s", user_id) == [(0,)]
