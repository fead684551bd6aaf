"""Issue 18's cross-tenant matrix: every route family, tried by every kind of outsider, against
a victim's records in the shipped stack (API and worker as processes, relay, fake model
provider). 0 leaks: no answer carries the victim's secret, no write changes anything of theirs.

The outsiders: an anonymous caller, another user (no org), a member of another org, a member
removed from the victim's org (the token from before the removal), the victim's revoked API key,
a guest (an anonymous user: grant_type anonymous), and the victim's read-only key (theirs to read
with, never to write). Families: REST, batch,
expand, search, ask, jobs, import, summaries, webhooks, gateway usage, linked sign-in providers,
realtime collection, room, user and job channels, the victim's passkeys, and files (download,
file tokens, multipart writes, resumable uploads)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import Stack, finished_job, signed_up, sql
from tests.files_support import PDF, pdf
from tests.integration.conftest import in_org, registered_passkey
from tests.soft_authenticator import SoftAuthenticator
from tests.waiting import eventually

pytestmark = pytest.mark.xdist_group("e2e")

NOTES, TASKS, PROJECTS = (f"/collections/{c}/records" for c in ("notes", "tasks", "projects"))
OUTSIDERS = ("anonymous", "other user", "other org", "removed member", "revoked key", "guest")
NO_ORG = ("other user", "guest")  # signed in, in no org
EVERYONE = (*OUTSIDERS, "read-only key")


@dataclass
class World:
    stack: Stack
    secret: str
    victim: httpx.AsyncClient  # acting in the victim's org
    victim_id: str
    note: str
    project: str
    task: str
    job: str
    hush: str  # a word of the note's body that is not the secret: what outsiders search for
    passkey: str = ""
    identity: str = ""  # a sign-in provider's account linked to the victim's
    headers: dict[str, dict[str, str]] = field(default_factory=dict)  # outsider → headers
    tokens: dict[str, str] = field(default_factory=dict)  # outsider → what a socket signs in with
    clients: list[httpx.AsyncClient] = field(default_factory=list)
    file: str = ""  # the name of the note's attachment (a PDF holding the secret)
    paper: str = ""  # a word on the attachment's page 2 alone: its chunks are embedded too


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
async def world(stack) -> AsyncIterator[World]:
    secret = f"SECRET{uuid.uuid4().hex[:10]}"
    hush = f"hush{uuid.uuid4().hex[:10]}"  # asked for: the fake provider echoes questions
    victim = await signed_up(stack)
    tokens = victim.tokens  # type: ignore[attr-defined]
    org = (await victim.post("/orgs", json={"name": "Victim Inc"})).json()
    acting = await in_org(victim, tokens, org["id"])
    victim.headers["Authorization"] = f"Bearer {acting['access_token']}"
    note = await victim.post(NOTES, json={"title": secret, "body": f"{secret} my diary {hush}"})
    project = await victim.post(PROJECTS, json={"name": secret})
    assert note.status_code == project.status_code == 201, (note.text, project.text)
    task = await victim.post(TASKS, json={"project": project.json()["id"], "title": secret})
    assert task.status_code == 201, task.text
    imported = await victim.post(
        "/jobs",
        json={
            "type": "import_records",
            "input": {"collection": "notes", "format": "csv", "data": f"title\n{secret} imp"},
        },
    )
    assert imported.status_code == 202, imported.text
    world = World(
        stack, secret, victim, tokens["user"]["id"], note.json()["id"],
        project.json()["id"], task.json()["id"], imported.json()["id"], hush, clients=[victim],
    )  # fmt: skip
    await finished_job(victim, world.job)
    # A provider account linked to the victim's (as a sign-in with it would link it).
    world.identity = str(
        sql(
            stack,
            "INSERT INTO auth_identities (id, user_id, provider, subject, email, email_verified,"
            " created_at, updated_at) VALUES (gen_random_uuid(), %s, 'google', %s, %s, true,"
            " now(), now()) RETURNING id",
            world.victim_id,
            f"sub-{secret}",
            f"{secret.lower()}@example.com",
        )[0][0]
    )
    world.paper = f"paper{uuid.uuid4().hex[:10]}"
    diary = pdf(["cover", f"{world.paper} {hush} {secret}"])  # its text embedded (Embed files)
    attached = await victim.patch(
        f"{NOTES}/{world.note}",
        files=[("attachments", ("diary.pdf", diary, "application/pdf"))],
    )
    assert attached.status_code == 200, attached.text
    world.file = attached.json()["attachments"][0]
    # A gateway call of the victim's, so there is usage of theirs to leak.
    chat = await victim.post(
        "/v1/chat/completions",
        json={"model": "chat", "messages": [{"role": "user", "content": secret}], "max_tokens": 5},
    )
    assert chat.status_code == 200, chat.text

    async def searchable():  # embedded: the victim's own search finds it
        found = await victim.post(
            "/collections/notes/search", json={"query": hush, "mode": "vector", "k": 3}
        )
        return any(i["record"]["id"] == world.note for i in found.json().get("items", []))

    await eventually(searchable, what="the victim's note was not embedded")

    async def document_searchable():  # the attachment's page too
        found = await victim.post(
            "/collections/notes/search", json={"query": world.paper, "mode": "text", "k": 3}
        )
        return any(i.get("page") == 2 for i in found.json().get("items", []))

    await eventually(document_searchable, what="the victim's attachment was not embedded")
    world.passkey = (await registered_passkey(victim, {}, SoftAuthenticator(), secret))["id"]

    keys = {}
    for name, scopes in (("revoked key", ["read", "write"]), ("read-only key", ["read"])):
        made = await victim.post("/auth/api-keys", json={"name": name, "scopes": scopes})
        assert made.status_code == 201, made.text
        keys[name] = made.json()
    revoked = await victim.delete(f"/auth/api-keys/{keys['revoked key']['api_key']['id']}")
    assert revoked.status_code == 204

    other_user = await signed_up(stack)
    other_org = await signed_up(stack)
    theirs = (await other_org.post("/orgs", json={"name": "Rival"})).json()
    rival = await in_org(other_org, other_org.tokens, theirs["id"])  # type: ignore[attr-defined]
    removed = await signed_up(stack)
    removed_id = removed.tokens["user"]["id"]  # type: ignore[attr-defined]
    sql(
        stack,
        "INSERT INTO org_members (id, org_id, user_id, role, created_at, updated_at)"
        " VALUES (gen_random_uuid(), %s, %s, 'member', now(), now())",
        org["id"],
        removed_id,
    )
    was_member = await in_org(removed, removed.tokens, org["id"])  # type: ignore[attr-defined]
    before = await removed.get(TASKS, headers=_bearer(was_member["access_token"]))
    assert secret in before.text  # a member sees the org's tasks...
    gone = await victim.delete(f"/orgs/{org['id']}/members/{removed_id}")
    assert gone.status_code == 204, gone.text  # ...and is removed

    guest = await victim.post("/auth/token", json={"grant_type": "anonymous"}, headers={})
    assert guest.status_code == 200, guest.text
    world.tokens = {
        "guest": guest.json()["access_token"],
        "other user": other_user.tokens["access_token"],  # type: ignore[attr-defined]
        "other org": rival["access_token"],
        "removed member": was_member["access_token"],
        "revoked key": keys["revoked key"]["key"],
        "read-only key": keys["read-only key"]["key"],
    }
    world.headers = {"anonymous": {}, **{k: _bearer(t) for k, t in world.tokens.items()}}
    world.clients += [other_user, other_org, removed]
    yield world
    for client in world.clients:
        await client.aclose()


def _reads(w: World) -> list[tuple[str, str, Any]]:
    return [
        ("GET", NOTES, None),
        ("GET", TASKS + "?expand=project", None),
        ("GET", PROJECTS, None),
        ("GET", f"{NOTES}/{w.note}", None),
        ("GET", f"{TASKS}/{w.task}?expand=project", None),
        ("GET", f"{PROJECTS}/{w.project}", None),
        ("GET", f"{NOTES}?filter=title%20%3D%20%22{w.secret}%22", None),
        ("POST", "/collections/notes/search", {"query": w.hush, "mode": "vector", "k": 10}),
        ("POST", "/collections/notes/search", {"query": w.hush, "mode": "text", "k": 10}),
        ("POST", "/collections/notes/ask", {"question": w.hush, "mode": "text", "k": 5}),
        ("POST", "/collections/notes/search", {"query": w.paper, "mode": "hybrid", "k": 10}),
        ("POST", "/collections/notes/ask", {"question": w.paper, "mode": "vector", "k": 5}),
        ("GET", "/jobs", None),
        ("GET", f"/jobs/{w.job}", None),
        ("GET", "/ai/usage?group_by=user", None),
        ("GET", "/ai/usage?group_by=org", None),
        ("GET", "/webhooks", None),
        ("GET", "/collections/notes/embedding-status", None),
        ("GET", f"/orgs/{_victim_org(w)}/members", None),
        ("GET", "/auth/mfa", None),
        # Every mail the stack sent, with its tokens, in dev; not mounted here (tests/integration/
        # test_dev_mail.py has the 404 and the loopback guard).
        ("GET", "/dev/mail", None),
        ("GET", "/auth/passkeys", None),
        ("GET", "/auth/identities", None),
        ("GET", _file_url(w), None),
    ]


def _file_url(w: World) -> str:
    return f"/files/notes/{w.note}/{w.file}"


def _victim_org(w: World) -> str:
    return str(sql(w.stack, "SELECT org FROM projects WHERE id = %s", w.project)[0][0])


def _writes(w: World) -> list[tuple[str, str, Any]]:
    return [
        ("PATCH", f"{NOTES}/{w.note}", {"title": "pwned"}),
        ("PATCH", f"{TASKS}/{w.task}", {"title": "pwned"}),
        ("PATCH", f"{PROJECTS}/{w.project}", {"name": "pwned"}),
        ("DELETE", f"{NOTES}/{w.note}", None),
        ("DELETE", f"{TASKS}/{w.task}", None),
        ("DELETE", f"{PROJECTS}/{w.project}", None),
        ("POST", f"{NOTES}:batch", {"operations": [{"op": "delete", "id": w.note}]}),
        (
            "POST",
            f"{TASKS}:batch",
            {"operations": [{"op": "update", "id": w.task, "data": {"title": "pwned"}}]},
        ),
        ("POST", TASKS, {"project": w.project, "title": "planted"}),
        ("POST", f"/jobs/{w.job}/cancel", None),
        ("POST", "/webhooks", {"url": "https://1.1.1.1/steal", "collection": "notes"}),
        ("POST", "/auth/mfa/recovery-codes", {"code": "000000"}),
        ("DELETE", "/auth/mfa/totp", {"recovery_code": "aaaaa-aaaaa"}),
        (
            "POST",
            f"/orgs/{_victim_org(w)}/invitations",
            {"email": "x@example.com", "role": "owner"},
        ),
        ("PATCH", f"/auth/passkeys/{w.passkey}", {"name": "pwned"}),
        ("DELETE", f"/auth/passkeys/{w.passkey}", None),
        ("DELETE", f"/auth/identities/{w.identity}", None),
    ]


def _victims_rows_are_untouched(w: World) -> None:
    assert sql(w.stack, "SELECT title, body FROM notes WHERE id = %s", w.note) == [
        (w.secret, f"{w.secret} my diary {w.hush}")
    ]
    assert sql(w.stack, "SELECT title FROM tasks WHERE project = %s", w.project) == [(w.secret,)]
    assert sql(w.stack, "SELECT name FROM projects WHERE id = %s", w.project) == [(w.secret,)]
    assert sql(w.stack, "SELECT count(*) FROM webhook_endpoints WHERE url LIKE %s", "%steal") == [
        (0,)
    ]
    assert sql(w.stack, "SELECT name FROM auth_passkeys WHERE id = %s", w.passkey) == [(w.secret,)]
    assert sql(w.stack, "SELECT user_id FROM auth_identities WHERE id = %s", w.identity) == [
        (uuid.UUID(w.victim_id),)
    ]
    assert sql(w.stack, "SELECT attachments FROM notes WHERE id = %s", w.note) == [([w.file],)]
    assert sql(w.stack, "SELECT name FROM stored_files WHERE record_id = %s", w.note) == [(w.file,)]


async def test_no_http_route_leaks_or_changes_the_victims_records(world):
    w = world
    async with httpx.AsyncClient(base_url=w.stack.base_url, timeout=30) as client:
        leaks = []
        for outsider in OUTSIDERS:
            for method, path, body in _reads(w):
                response = await client.request(
                    method, path, json=body, headers=w.headers[outsider]
                )
                assert response.status_code < 500, (outsider, path, response.text)
                if w.secret in response.text or w.victim_id in response.text:
                    leaks.append((outsider, method, path, response.status_code))
        for outsider in EVERYONE:
            for method, path, body in _writes(w):
                response = await client.request(
                    method, path, json=body, headers=w.headers[outsider]
                )
                if response.status_code < 400:
                    leaks.append((outsider, method, path, response.status_code))
            # Files come by multipart on the record's own routes.
            planted = [("attachments", ("planted.pdf", PDF, "application/pdf"))]
            for method, path in (("PATCH", f"{NOTES}/{w.note}"), ("POST", NOTES)):
                response = await client.request(
                    method, path, files=planted, headers=w.headers[outsider]
                )
                assert response.status_code < 500, (outsider, path, response.text)
                # A create is a write of their own, for those who may write at all.
                own = method == "POST" and outsider in ("other user", "other org")
                if response.status_code < 400 and not own:
                    leaks.append((outsider, method, path, response.status_code))
        assert leaks == []
    _victims_rows_are_untouched(w)


async def test_no_file_token_opens_the_victims_files(world):
    """Outsiders get file tokens for themselves, if anyone: none opens the victim's file, even
    one that names it. Keys get none (they send themselves as the bearer)."""
    w = world
    scopes = [None, {"collection": "notes", "record": w.note, "name": w.file}]
    async with httpx.AsyncClient(base_url=w.stack.base_url, timeout=30) as client:
        for outsider in EVERYONE:
            for scope in scopes:
                issued = await client.post("/files/token", json=scope, headers=w.headers[outsider])
                assert issued.status_code < 500, issued.text
                if outsider in ("other user", "other org", "guest"):  # a session of their own
                    assert issued.status_code == 200, issued.text
                else:  # no session (anonymous, keys) or one that no longer holds
                    assert issued.status_code in (401, 403), (outsider, issued.text)
                    continue
                token = issued.json()["token"]
                opened = await client.get(_file_url(w), params={"token": token})
                assert opened.status_code == 404, (outsider, opened.status_code)
                assert w.secret not in opened.text
        # The victim's own token opens it, so the 404s above are the rules, not a broken route.
        own = (await w.victim.post("/files/token", json=scopes[1])).json()["token"]
        opened = await client.get(_file_url(w), params={"token": own})
        assert opened.status_code == 200 and w.secret in opened.text


async def test_no_outsider_reaches_the_victims_resumable_uploads(world):
    """The victim's unfinished tus upload (its first bytes hold the secret): no outsider learns
    how far it got, adds to it or drops it (404, or 401/403 for those who may not call at all),
    and none starts one into the victim's note."""
    w = world
    tus = {"Tus-Resumable": "1.0.0"}
    octets = {**tus, "Content-Type": "application/offset+octet-stream"}
    first = PDF + w.secret.encode()

    def b64(value: str) -> str:
        return base64.b64encode(value.encode()).decode()

    into_note = {
        **tus,
        "Upload-Length": str(len(first) + 100),
        "Upload-Metadata": f"collection {b64('notes')},record {b64(w.note)},"
        f"field {b64('attachments')},filename {b64('planted.pdf')}",
    }
    made = await w.victim.post("/files/uploads", headers=into_note)
    assert made.status_code == 201, made.text
    location = made.headers["location"]
    sent = await w.victim.patch(location, headers={**octets, "Upload-Offset": "0"}, content=first)
    assert sent.status_code == 204, sent.text
    async with httpx.AsyncClient(base_url=w.stack.base_url, timeout=30) as client:
        leaks = []
        for outsider in EVERYONE:
            headers = w.headers[outsider]
            tries = [
                ("PATCH", location, {**octets, "Upload-Offset": str(len(first))}, b"x" * 100),
                ("DELETE", location, tus, None),
                ("POST", "/files/uploads", into_note, None),
            ]
            if outsider != "read-only key":  # the victim's own key may read their upload
                tries.append(("HEAD", location, tus, None))
            for method, path, extra, body in tries:
                answer = await client.request(
                    method, path, headers={**headers, **extra}, content=body
                )
                assert answer.status_code < 500, (outsider, method, answer.text)
                if answer.status_code < 400 or w.secret in answer.text:
                    leaks.append((outsider, method, path, answer.status_code))
        assert leaks == []
    head = await w.victim.head(location, headers=tus)
    assert head.status_code == 200 and head.headers["upload-offset"] == str(len(first))
    assert (await w.victim.delete(location, headers=tus)).status_code == 204
    _victims_rows_are_untouched(w)


async def test_no_job_of_an_outsider_reads_or_writes_the_victims_records(world):
    w = world
    jobs = {
        "import": {
            "type": "import_records",
            "input": {
                "collection": "tasks",
                "format": "jsonl",
                "data": json.dumps({"project": w.project, "title": "planted"}),
            },
        },
        "summary": {"type": "summarize_record", "input": {"collection": "notes", "id": w.note}},
    }
    async with httpx.AsyncClient(base_url=w.stack.base_url, timeout=30) as client:
        started = []
        for outsider in EVERYONE:
            for kind, body in jobs.items():
                response = await client.post("/jobs", json=body, headers=w.headers[outsider])
                assert response.status_code < 500, response.text
                if response.status_code == 202:
                    started.append((outsider, kind, response.json()["id"]))
        # The rest: refused.
        assert {o for o, _, _ in started} <= {"other user", "other org", "guest"}
        for outsider, kind, job_id in started:
            client.headers.update(w.headers[outsider])
            done = await finished_job(client, job_id)
            assert w.secret not in json.dumps(done), (outsider, kind, done)
            if kind == "import":
                assert done["result"]["inserted"] == 0, done
    _victims_rows_are_untouched(w)


async def _socket(w: World, token: str):
    url = w.stack.base_url.replace("http", "ws") + "/realtime"
    socket = await websockets.connect(url)
    await socket.send(json.dumps({"type": "auth", "token": token}))
    return socket


async def _frame(socket, within: float = 10) -> dict[str, Any]:
    frame: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), within))
    return frame


async def _until_frame(socket, wanted, seen: list[dict[str, Any]]) -> dict[str, Any]:
    """Frames until one ``wanted(frame)`` holds; every frame read is kept in ``seen``."""
    while True:
        frame = await _frame(socket)
        seen.append(frame)
        if wanted(frame):
            return frame


async def test_no_realtime_channel_leaks_the_victims_changes(world):
    w = world
    victim_token = w.victim.headers["Authorization"].removeprefix("Bearer ")
    # Those whose credential is gone cannot even sign a socket in.
    for outsider in ("removed member", "revoked key"):
        socket = await _socket(w, w.tokens[outsider])
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await _frame(socket)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401, outsider
    # The victim's own socket is the witness that each change went out.
    witness = await _socket(w, victim_token)
    assert (await _frame(witness))["type"] == "ready"
    for sub, channel in (("n", "collection:notes"), ("t", "collection:tasks"), ("r", "room:lobby")):
        await witness.send(json.dumps({"type": "subscribe", "id": sub, "channel": channel}))
        await _until_frame(witness, lambda f, sub=sub: f.get("id") == sub, [])

    for outsider in ("other user", "other org", "guest", "read-only key"):
        socket = await _socket(w, w.tokens[outsider])
        seen: list[dict[str, Any]] = []
        await _until_frame(socket, lambda f: f["type"] == "ready", seen)
        channels = {
            "n": "collection:notes",
            "t": "collection:tasks",
            "r": "room:lobby",
            "u": f"user:{w.victim_id}",
            "j": f"job:{w.job}",
        }
        for sub, channel in channels.items():
            await socket.send(
                json.dumps({"type": "subscribe", "id": sub, "channel": channel, "self": True})
            )
            answer = await _until_frame(
                socket, lambda f, sub=sub: f.get("ref", f.get("id")) == sub, seen
            )
            if sub in ("u", "j") and outsider != "read-only key":
                assert answer["type"] == "error", (outsider, channel, answer)
        # The victim changes a note and a task and speaks in the room; the witness hears all.
        marker = uuid.uuid4().hex[:8]
        await w.victim.patch(f"{NOTES}/{w.note}", json={"body": f"{w.secret} my diary {w.hush}"})
        await w.victim.patch(f"{TASKS}/{w.task}", json={"status": "doing"})
        await witness.send(
            json.dumps({"type": "broadcast", "channel": "room:lobby", "event": "say",
                        "payload": {"text": w.secret, "marker": marker}})
        )  # fmt: skip
        for wanted in ("n", "t"):
            await _until_frame(witness, lambda f, wanted=wanted: f.get("sub") == wanted, [])
        # The outsider's own changes come after the victim's in each channel's order: once
        # they arrive, anything of the victim's would have arrived before them.
        if outsider == "read-only key":
            refused = {"type": "broadcast", "channel": "room:lobby", "event": "x", "payload": {}}
            await socket.send(json.dumps(refused))
            await _until_frame(socket, lambda f: f["type"] == "error", seen)
        else:
            client = httpx.AsyncClient(base_url=w.stack.base_url, headers=w.headers[outsider])
            async with client:
                mine = await client.post(NOTES, json={"title": f"own {marker}"})
                assert mine.status_code == 201, mine.text
            await _until_frame(
                socket,
                lambda f, marker=marker: f.get("sub") == "n" and marker in json.dumps(f),
                seen,
            )
            await socket.send(
                json.dumps({"type": "broadcast", "channel": "room:lobby", "event": "say",
                            "payload": {"marker": marker}})
            )  # fmt: skip
            # Heard back (self: true), or refused to a caller in no org (no room to be in).
            heard = await _until_frame(socket, lambda f: f["type"] in ("broadcast", "error"), seen)
            assert heard["type"] == ("error" if outsider in NO_ORG else "broadcast"), heard
            leaked = [f for f in seen if w.secret in json.dumps(f)]
            assert leaked == [], (outsider, leaked)
        await socket.close()
    await witness.close()
