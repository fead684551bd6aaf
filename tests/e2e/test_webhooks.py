"""Webhooks through the real stack: writes → outbox → relay → deliveries → a real Celery worker →
a receiver in this process on loopback that verifies EVERY signature (tests/webhook_receiver.py,
written from docs/webhooks.md). Also runs the docs' Python and Node verification code."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest

from backend.lib.urls import libpq_database_url
from backend.webhooks.signing import signature_header
from tests.waiting import eventually
from tests.webhook_receiver import Receiver, webhook_receiver

PASSWORD = "correct horse battery staple"
PROJECTS = "/collections/projects/records"
DOCS = Path(__file__).parents[2] / "docs" / "webhooks.md"


@pytest.fixture
async def admin(stack):
    email = f"hooks-{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
        account = await client.post("/auth/signup", json={"email": email, "password": PASSWORD})
        with psycopg.connect(libpq_database_url(stack.database_url), autocommit=True) as conn:
            conn.execute(
                "UPDATE users SET role = 'admin' WHERE id = %s", (account.json()["user"]["id"],)
            )
        tokens = await client.post(
            "/auth/token", json={"grant_type": "password", "email": email, "password": PASSWORD}
        )
        client.headers["Authorization"] = f"Bearer {tokens.json()['access_token']}"
        yield client
        # Endpoints outlive a test otherwise, and later tests' writes would be sent to them.
        while hooks := (await client.get("/webhooks")).json()["items"]:
            for hook in hooks:
                await client.delete(f"/webhooks/{hook['id']}")


async def _register(admin: httpx.AsyncClient, receiver: Receiver, **body) -> dict:
    response = await admin.post(
        "/webhooks", json={"url": receiver.url, "collection": "projects", **body}
    )
    assert response.status_code == 201, response.text
    hook = response.json()
    receiver.secrets.append(hook["secret"])
    return hook


def _mine(receiver: Receiver, record_ids: set[str]) -> dict[int, dict]:
    """Verified deliveries of events about these records, by event id."""
    return {
        event_id: item.payload
        for event_id, item in receiver.accepted().items()
        if item.payload["record_id"] in record_ids
    }


async def test_every_change_arrives_once_signed_and_verified(stack, admin):
    with webhook_receiver() as receiver:
        hook = await _register(admin, receiver)
        marker = uuid.uuid4().hex[:8]
        created = await asyncio.gather(
            *(admin.post(PROJECTS, json={"name": f"p{i} {marker}"}) for i in range(20))
        )
        assert all(r.status_code == 201 for r in created)
        ids = [r.json()["id"] for r in created]
        for record_id in ids[:5]:
            assert (
                await admin.patch(f"{PROJECTS}/{record_id}", json={"name": "renamed"})
            ).is_success
        for record_id in ids[-3:]:
            assert (await admin.delete(f"{PROJECTS}/{record_id}")).status_code == 204

        got = await eventually(lambda: (m := _mine(receiver, set(ids))) and len(m) == 28 and m)
        ops = sorted(p["op"] for p in got.values())
        assert ops == ["delete"] * 3 + ["insert"] * 20 + ["update"] * 5
        assert receiver.unverified == []  # every request carried a valid signature
        for event_id, payload in got.items():
            assert payload["event_id"] == event_id and payload["collection"] == "projects"
            if payload["op"] == "update":
                assert payload["record"]["name"] == "renamed"
                assert payload["old"]["name"].endswith(marker)
            if payload["op"] == "delete":
                assert payload["record"] is None and payload["old"]["id"] == payload["record_id"]
        # One delivery per event, each sent once (the receiver answered 200 every time).
        mine = [r for r in receiver.received if r.payload["record_id"] in set(ids)]
        assert len(mine) == 28
        deliveries = await admin.get(f"/webhooks/{hook['id']}/deliveries", params={"limit": 100})
        assert {d["status"] for d in deliveries.json()["items"]} == {"succeeded"}
        assert sorted(d["event_id"] for d in deliveries.json()["items"]) == sorted(got)


async def test_a_failing_receiver_gets_retries_every_attempt_logged_then_replay(stack, admin):
    with webhook_receiver(fail_first=3) as receiver:
        hook = await _register(admin, receiver)
        record = (await admin.post(PROJECTS, json={"name": "flaky"})).json()
        got = await eventually(lambda: _mine(receiver, {record["id"]}))
        (event_id,) = got
        tries = [r for r in receiver.received if r.event_id == event_id]
        assert len(tries) == 4 and all(r.verified_with for r in tries)

        async def logged():
            (delivery,) = (await admin.get(f"/webhooks/{hook['id']}/deliveries")).json()["items"]
            return delivery if delivery["status"] == "succeeded" else None

        delivery = await eventually(logged)
        attempts = delivery["attempts"]
        assert [(a["attempt"], a["status_code"], a["succeeded"]) for a in attempts] == [
            (1, 500, False), (2, 500, False), (3, 500, False), (4, 200, True),
        ]  # fmt: skip
        assert all(a["latency_ms"] > 0 for a in attempts)
        assert [a["error"] for a in attempts] == ["answered 500"] * 3 + [None]

        replayed = await admin.post(f"/webhooks/deliveries/{delivery['id']}/replay")
        assert replayed.status_code == 202
        await eventually(lambda: len([r for r in receiver.received if r.event_id == event_id]) == 5)
        again = [r for r in receiver.received if r.event_id == event_id][-1]
        assert again.verified_with and again.body == tries[-1].body  # the same event, re-signed
        done = await eventually(logged)
        assert [a["attempt"] for a in done["attempts"]] == [1, 2, 3, 4, 5]


async def test_after_a_rotation_both_secrets_verify_until_the_overlap_ends(stack, admin):
    with webhook_receiver() as receiver:
        hook = await _register(admin, receiver)
        old = hook["secret"]
        rotated = (
            await admin.post(f"/webhooks/{hook['id']}/rotate-secret", json={"overlap_seconds": 60})
        ).json()
        receiver.secrets = [rotated["secret"]]  # a receiver already on the new secret …
        first = (await admin.post(PROJECTS, json={"name": "rolled"})).json()
        got = await eventually(lambda: _mine(receiver, {first["id"]}))
        (item,) = [r for r in receiver.received if r.event_id in got]
        assert item.headers["litebase-signature"].count("v1=") == 2
        receiver.secrets = [old]  # … and one still on the old one both verify
        second = (await admin.post(PROJECTS, json={"name": "rolled too"})).json()
        await eventually(lambda: _mine(receiver, {second["id"]}))
        # Overlap over (0): only the newest secret signs.
        newest = (
            await admin.post(f"/webhooks/{hook['id']}/rotate-secret", json={"overlap_seconds": 0})
        ).json()
        receiver.secrets = [newest["secret"]]
        third = (await admin.post(PROJECTS, json={"name": "rolled thrice"})).json()
        got = await eventually(lambda: _mine(receiver, {third["id"]}))
        (item,) = [r for r in receiver.received if r.event_id in got]
        assert item.headers["litebase-signature"].count("v1=") == 1
        assert receiver.unverified == []


# --- the docs' receiver code, run against signatures Litebase makes


def _snippet(language: str) -> str:
    (code,) = re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), re.S)
    return code


def _signed_cases() -> list[tuple[str, str, bytes, bool]]:
    record = {"event_id": 7, "op": "insert", "record": {"name": "é"}}
    body = json.dumps(record, ensure_ascii=False).encode()
    now = int(time.time())
    good = signature_header(["whsec_new", "whsec_old"], now, body)
    return [
        ("whsec_new", good, body, True),
        ("whsec_old", good, body, True),
        ("whsec_wrong", good, body, False),
        ("whsec_new", good, body + b" ", False),
        ("whsec_new", signature_header(["whsec_new"], now - 3600, body), body, False),
        ("whsec_new", "", body, False),
    ]


def test_the_documented_python_verifier_checks_litebase_signatures():
    namespace: dict = {}
    exec(_snippet("python"), namespace)
    verify = namespace["verify_litebase_signature"]
    for secret, header, body, expected in _signed_cases():
        assert verify(secret, header, body) is expected, (secret, header)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_the_documented_node_verifier_checks_litebase_signatures():
    cases = [
        {"secret": s, "header": h, "body": b.decode("latin-1"), "expected": e}
        for s, h, b, e in _signed_cases()
    ]
    harness = (
        _snippet("javascript")
        + "\nconst cases = JSON.parse(process.argv[1]);\n"
        + "const got = cases.map((c) => verifyLitebaseSignature("
        + "c.secret, c.header, Buffer.from(c.body, 'latin1')));\n"
        + "console.log(JSON.stringify(got));\n"
    )
    result = subprocess.run(
        ["node", "-e", harness, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(result.stdout) == [c["expected"] for c in cases]
