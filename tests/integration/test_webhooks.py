"""Webhooks against real Postgres: registration (admins only, SSRF-checked), rotation, the relay
consumer's deliveries (once per event), and single attempts at a loopback receiver."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace

import msgspec
import psycopg
import pytest
import redis
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from backend.app import create_app
from backend.collections.spec import CollectionRegistry
from backend.db.transactions import transaction
from backend.events.relay import OutboxEvent
from backend.lib.urls import async_database_url, libpq_database_url
from backend.webhooks import DELIVER_TASK
from backend.webhooks.consumer import make_webhook_consumer
from backend.webhooks.delivery import deliver, overdue_deliveries, trim_deliveries
from backend.webhooks.service import record_deliveries, target_policy
from backend.webhooks.signing import derive_secret
from tests.integration.conftest import PASSWORD, bearer
from tests.webhook_receiver import webhook_receiver
from workers.celery_app import create_celery_app

PUBLIC_URL = "https://1.1.1.1/hooks"  # an IP literal: registration resolves nothing


async def _register(client, admin, **body):
    response = await client.post(
        "/webhooks", json={"url": PUBLIC_URL, "collection": "notes", **body}, headers=admin
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_only_admins_manage_webhooks(client, sign_up, admin):
    user = bearer((await sign_up())["access_token"])
    created = await _register(client, admin)
    hook = f"/webhooks/{created['id']}"
    for method, path, body in [
        ("GET", "/webhooks", None),
        ("POST", "/webhooks", {"url": PUBLIC_URL, "collection": "notes"}),
        ("GET", hook, None),
        ("PATCH", hook, {"enabled": False}),
        ("DELETE", hook, None),
        ("POST", f"{hook}/rotate-secret", {}),
        ("GET", f"{hook}/deliveries", None),
    ]:
        response = await client.request(method, path, json=body, headers=user)
        assert response.status_code == 403, (method, path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert (await client.request(method, path, json=body)).status_code == 401


async def test_registration_shows_the_secret_once(client, admin, settings):
    created = await _register(client, admin, events=["update", "insert"], description="crm")
    assert created["secret"].startswith("whsec_")
    assert created["events"] == ["insert", "update"] and created["enabled"] is True
    (salt,) = await _one(settings, "SELECT secret_salt FROM webhook_endpoints")
    assert derive_secret(settings.secret_key, salt) == created["secret"]
    assert created["secret"] not in (await client.get("/webhooks", headers=admin)).text
    fetched = (await client.get(f"/webhooks/{created['id']}", headers=admin)).json()
    assert "secret" not in fetched and fetched["description"] == "crm"
    assert (await _register(client, admin))["events"] == ["*"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"url": "ftp://example.com/"}, "url", "http:// or https://"),
        ({"url": "http://127.0.0.1:8080/"}, "url", "127.0.0.1 is loopback"),
        ({"url": "http://localhost:8080/"}, "url", "localhost resolves to"),
        ({"url": "http://169.254.169.254/latest/meta-data"}, "url", "link-local"),
        ({"url": "http://10.0.0.8/"}, "url", "private"),
        ({"url": "http://[::ffff:127.0.0.1]/"}, "url", "loopback (as IPv6"),
        ({"url": "http://0.0.0.0/"}, "url", "unspecified"),
        ({"url": "http://2130706433/"}, "url", "127.0.0.1 is loopback"),  # a decimal IPv4
        ({"url": "http://0x7f.1/"}, "url", "127.0.0.1 is loopback"),
        ({"url": "http://224.0.0.1/"}, "url", "multicast"),
        ({"url": "https://u:p@1.1.1.1/"}, "url", "credentials"),
        ({"collection": "nope"}, "collection", "is not a collection"),
        ({"events": ["upsert"]}, "events", ""),
        ({"events": []}, "events", ""),
        ({"secret": "mine"}, "secret", ""),
    ],
)
async def test_bad_registrations_are_422_naming_the_field(client, admin, body, field, message):
    response = await client.post(
        "/webhooks", json={"url": PUBLIC_URL, "collection": "notes", **body}, headers=admin
    )
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert errors[0]["field"].startswith(field), errors
    assert message in errors[0]["message"] or message in response.json()["detail"]


async def test_endpoints_change_and_go(client, admin):
    created = await _register(client, admin)
    hook = f"/webhooks/{created['id']}"
    changed = await client.patch(hook, json={"enabled": False, "events": ["delete"]}, headers=admin)
    assert changed.status_code == 200
    assert (changed.json()["enabled"], changed.json()["events"]) == (False, ["delete"])
    refused = await client.patch(hook, json={"url": "http://localhost/"}, headers=admin)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "url"
    assert (await client.delete(hook, headers=admin)).status_code == 204
    assert (await client.get(hook, headers=admin)).status_code == 404


async def test_the_endpoint_count_is_limited(settings, clock, sign_up_admin_for):
    limited = msgspec.structs.replace(settings, webhook_max_endpoints=2)
    async with AsyncTestClient(create_app(limited, clock=clock)) as client:
        admin = await sign_up_admin_for(client)
        for _ in range(2):
            await _register(client, admin)
        response = await client.post(
            "/webhooks", json={"url": PUBLIC_URL, "collection": "notes"}, headers=admin
        )
        assert response.status_code == 409 and "WEBHOOK_MAX_ENDPOINTS" in response.json()["detail"]


async def test_rotation_gives_a_new_secret_and_keeps_the_old_one_for_the_overlap(
    client, admin, settings
):
    created = await _register(client, admin)
    rotate = f"/webhooks/{created['id']}/rotate-secret"
    rotated = (await client.post(rotate, json={"overlap_seconds": 600}, headers=admin)).json()
    assert rotated["secret"] != created["secret"] and rotated["secret"].startswith("whsec_")
    expires = datetime.fromisoformat(rotated["previous_secret_expires_at"])
    assert 590 < (expires - datetime.now(UTC)).total_seconds() <= 600
    current, previous = await _one(
        settings, "SELECT secret_salt, previous_secret_salt FROM webhook_endpoints"
    )
    assert derive_secret(settings.secret_key, previous) == created["secret"]
    assert derive_secret(settings.secret_key, current) == rotated["secret"]
    # No body: the longest overlap; 0: the old secret stops at once; more than allowed: 422.
    default = (await client.post(rotate, headers=admin)).json()
    assert datetime.fromisoformat(default["previous_secret_expires_at"]) > expires
    now = (await client.post(rotate, json={"overlap_seconds": 0}, headers=admin)).json()
    assert now["previous_secret_expires_at"] is None
    too_long = await client.post(rotate, json={"overlap_seconds": 86_401}, headers=admin)
    assert too_long.status_code == 422
    assert too_long.json()["errors"][0]["field"] == "overlap_seconds"


# --- deliveries


def _event(event_id: int, op: str = "insert", collection: str = "notes") -> OutboxEvent:
    return OutboxEvent(
        id=event_id,
        collection=collection,
        op=op,
        record_id=f"r{event_id}",
        record={"id": f"r{event_id}", "title": "t"},
        old=None if op == "insert" else {"id": f"r{event_id}", "title": "before"},
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
    )


async def _record(settings, events) -> list:
    engine = create_async_engine(async_database_url(settings.database_url))
    try:
        async with AsyncSession(engine) as db, transaction(db):  # as the relay consumer owns it
            return await record_deliveries(db, events)
    finally:
        await engine.dispose()


async def _one(settings, statement: str, *params):
    rows = await _all(settings, statement, *params)
    assert len(rows) == 1, rows
    return rows[0]


async def _all(settings, statement: str, *params):
    with psycopg.connect(libpq_database_url(settings.database_url), autocommit=True) as conn:
        return conn.execute(statement, params).fetchall()


async def test_the_consumer_creates_one_delivery_per_endpoint_and_wanted_event(
    client, admin, settings
):
    everything = await _register(client, admin)
    inserts = await _register(client, admin, events=["insert"])
    await _register(client, admin, enabled=False)
    await _register(client, admin, collection="projects")
    events = [_event(1), _event(2, "update"), _event(3, "delete"), _event(4, "insert", "jobs")]
    created = await _record(settings, events)
    assert len(created) == 4  # three for `everything`, one for `inserts`
    # The relay hands the same events on again (a crash before it saved its position).
    assert await _record(settings, events) == []
    assert await _record(settings, [*events, _event(5)]) != []
    rows = await _all(
        settings,
        "SELECT endpoint_id::text, event_id, op, status FROM webhook_deliveries"
        " ORDER BY endpoint_id, event_id",
    )
    assert sorted(rows) == sorted(
        [
            (everything["id"], 1, "insert", "pending"),
            (everything["id"], 2, "update", "pending"),
            (everything["id"], 3, "delete", "pending"),
            (everything["id"], 5, "insert", "pending"),
            (inserts["id"], 1, "insert", "pending"),
            (inserts["id"], 5, "insert", "pending"),
        ]
    )
    (payload,) = await _one(
        settings, "SELECT payload FROM webhook_deliveries WHERE event_id = 2 LIMIT 1"
    )
    assert payload == {
        "event_id": 2, "collection": "notes", "op": "update", "record_id": "r2",
        "record": {"id": "r2", "title": "t"}, "old": {"id": "r2", "title": "before"},
        "timestamp": "2026-12-01T00:00:00+00:00",
    }  # fmt: skip


async def _hooked(client, admin, settings, url: str) -> str:
    """An endpoint at ``url`` (inserted as is: registration would refuse loopback) and one
    pending delivery to it; returns the delivery id."""
    created = await _register(client, admin)
    with psycopg.connect(libpq_database_url(settings.database_url), autocommit=True) as conn:
        conn.execute("UPDATE webhook_endpoints SET url = %s WHERE id = %s", (url, created["id"]))
    (delivery_id,) = await _record(settings, [_event(42)])
    return str(delivery_id)


def _attempt(settings, delivery_id: str, **changes) -> float | None:
    tuned = msgspec.structs.replace(settings, **changes)
    with psycopg.connect(libpq_database_url(settings.database_url), autocommit=True) as conn:
        return deliver(conn, delivery_id, tuned, target_policy(tuned))


async def test_at_send_time_loopback_is_refused_by_default_and_nothing_connects(
    client, admin, settings
):
    with webhook_receiver() as receiver:
        for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
            delivery_id = await _hooked(client, admin, settings, url)
            assert _attempt(settings, delivery_id) is None
            status, error = await _one(
                settings,
                "SELECT status, last_error FROM webhook_deliveries WHERE id = %s",
                delivery_id,
            )
            assert status == "failed" and error.startswith("refused: ")
            assert "127.0.0.1 is loopback" in error
        assert receiver.received == []


async def test_one_attempt_signs_logs_and_schedules_the_next(client, admin, settings):
    with webhook_receiver(fail_first=1) as receiver:
        delivery_id = await _hooked(client, admin, settings, receiver.url)
        (salt,) = await _one(settings, "SELECT secret_salt FROM webhook_endpoints")
        receiver.secrets = [derive_secret(settings.secret_key, salt)]
        allowed = {"webhook_allow_private_targets": True, "webhook_retry_backoff_seconds": 4.0}
        wait = _attempt(settings, delivery_id, **allowed)
        assert wait is not None and 2.0 <= wait <= 4.0
        # Not due yet: a second copy of the task does nothing.
        assert _attempt(settings, delivery_id, **allowed) is None
        assert len(receiver.received) == 1
        with psycopg.connect(libpq_database_url(settings.database_url), autocommit=True) as c:
            due = "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = %s"
            c.execute(due, (delivery_id,))
        assert _attempt(settings, delivery_id, **allowed) is None
    assert not receiver.unverified and len(receiver.received) == 2
    sent = receiver.received[-1]
    assert sent.headers["litebase-event-id"] == "42"
    assert sent.headers["litebase-delivery-id"] == delivery_id
    assert sent.headers["content-type"] == "application/json"
    assert sent.payload["event_id"] == 42 and sent.payload["record_id"] == "r42"
    attempts = await _all(
        settings,
        "SELECT attempt, status_code, succeeded, error, latency_ms > 0 FROM webhook_attempts"
        " WHERE delivery_id = %s ORDER BY attempt",
        delivery_id,
    )
    assert attempts == [(1, 500, False, "answered 500", True), (2, 200, True, None, True)]
    assert await _one(
        settings, "SELECT status, attempts FROM webhook_deliveries WHERE id = %s", delivery_id
    ) == ("succeeded", 2)


async def test_redirects_are_not_followed(client, admin, settings):
    """Default policy, with only the first hop's address allowed (127.0.0.2): its redirect to
    localhost is not followed, and neither is one to an allowed address."""
    first_hop = {"webhook_allowed_networks": ("127.0.0.2/32",)}
    with webhook_receiver() as inside:
        for redirect_to, allowed in [
            (inside.url.replace("127.0.0.1", "localhost"), first_hop),
            (inside.url, {"webhook_allow_private_targets": True}),
        ]:
            with webhook_receiver("127.0.0.2", redirect_to=redirect_to) as bouncer:
                delivery_id = await _hooked(client, admin, settings, bouncer.url)
                (salt,) = await _one(
                    settings,
                    "SELECT e.secret_salt FROM webhook_endpoints e JOIN webhook_deliveries d"
                    " ON d.endpoint_id = e.id WHERE d.id = %s",
                    delivery_id,
                )
                bouncer.secrets = [derive_secret(settings.secret_key, salt)]
                assert _attempt(settings, delivery_id, **allowed) is None
                assert len(bouncer.received) == 1 and not bouncer.unverified
            status, code, error = await _one(
                settings,
                "SELECT status, last_status_code, last_error FROM webhook_deliveries WHERE id = %s",
                delivery_id,
            )
            assert (status, code) == ("failed", 307) and "do not follow redirects" in error
            assert redirect_to in error
        assert inside.received == []


async def test_retries_stop_when_the_window_is_spent(client, admin, settings):
    with webhook_receiver() as receiver:  # no secrets: every request is refused (400)
        delivery_id = await _hooked(client, admin, settings, receiver.url)
        tuned = {
            "webhook_allow_private_targets": True,
            "webhook_retry_backoff_seconds": 50.0,
            "webhook_retry_window_seconds": 10.0,
        }
        assert _attempt(settings, delivery_id, **tuned) is None
    status, error = await _one(
        settings, "SELECT status, last_error FROM webhook_deliveries WHERE id = %s", delivery_id
    )
    assert status == "failed" and "gave up after 1 attempts" in error


async def test_deliveries_are_listed_and_replayed_by_hand(client, admin, settings):
    with webhook_receiver() as receiver:
        delivery_id = await _hooked(client, admin, settings, receiver.url)
        (endpoint_id,) = await _one(settings, "SELECT id::text FROM webhook_endpoints")
        (salt,) = await _one(settings, "SELECT secret_salt FROM webhook_endpoints")
        receiver.secrets = [derive_secret(settings.secret_key, salt)]
        replay = f"/webhooks/deliveries/{delivery_id}/replay"
        assert (await client.post(replay, headers=admin)).status_code == 409  # still pending
        assert _attempt(settings, delivery_id, webhook_allow_private_targets=True) is None
        listed = (await client.get(f"/webhooks/{endpoint_id}/deliveries", headers=admin)).json()[
            "items"
        ]
        assert [d["id"] for d in listed] == [delivery_id]
        assert listed[0]["status"] == "succeeded" and listed[0]["payload"]["event_id"] == 42
        assert [(a["attempt"], a["status_code"]) for a in listed[0]["attempts"]] == [(1, 200)]
        replayed = await client.post(replay, headers=admin)
        assert replayed.status_code == 202 and replayed.json()["status"] == "pending"
        # (The test's app has no worker: send the replayed round here.)
        assert _attempt(settings, delivery_id, webhook_allow_private_targets=True) is None
        one = (await client.get(f"/webhooks/deliveries/{delivery_id}", headers=admin)).json()
        assert one["status"] == "succeeded"
        assert [a["attempt"] for a in one["attempts"]] == [1, 2]
        failed = await client.get(
            f"/webhooks/{endpoint_id}/deliveries", params={"status": "failed"}, headers=admin
        )
        assert failed.json() == {"items": [], "next_cursor": None}
    assert len(receiver.received) == 2 and not receiver.unverified
    missing = "/webhooks/deliveries/00000000-0000-0000-0000-000000000000/replay"
    assert (await client.post(missing, headers=admin)).status_code == 404


@pytest.fixture
def sign_up_admin_for(make_admin):
    async def _admin(client) -> dict[str, str]:
        email = f"wh-admin-{datetime.now(UTC).timestamp()}@example.com"
        account = (
            await client.post("/auth/signup", json={"email": email, "password": PASSWORD})
        ).json()
        make_admin(account["user"]["id"])
        tokens = await client.post(
            "/auth/token", json={"grant_type": "password", "email": email, "password": PASSWORD}
        )
        return bearer(tokens.json()["access_token"])

    return _admin


async def test_lost_deliveries_are_found_for_requeue_and_old_ones_trimmed(client, admin, settings):
    await _register(client, admin)
    ids = [str(i) for i in await _record(settings, [_event(i) for i in range(1, 6)])]
    with psycopg.connect(libpq_database_url(settings.database_url), autocommit=True) as conn:
        late = "now() - interval '5 minutes'"
        for delivery_id, changes in zip(
            ids,
            [
                f"next_attempt_at = {late}",  # lost: found
                f"next_attempt_at = {late}, leased_until = now() + interval '1 minute'",  # held
                "next_attempt_at = now()",  # just due: its task is on the way
                f"status = 'succeeded', finished_at = now() - interval '31 days', "
                f"next_attempt_at = {late}",  # finished long ago: trimmed
                "status = 'failed', finished_at = now() - interval '29 days'",  # kept
            ],
            strict=True,
        ):
            conn.execute(f"UPDATE webhook_deliveries SET {changes} WHERE id = %s", (delivery_id,))
        assert overdue_deliveries(conn, 60) == [ids[0]]
        conn.execute(
            "INSERT INTO webhook_attempts (id, delivery_id, attempt, latency_ms, succeeded,"
            " created_at, updated_at) VALUES (gen_random_uuid(), %s, 1, 1.0, true, now(), now())",
            (ids[3],),
        )
        assert trim_deliveries(conn, 30) == 1
        left = {r[0] for r in conn.execute("SELECT id::text FROM webhook_deliveries")}
        assert left == set(ids) - {ids[3]}
        assert conn.execute("SELECT count(*) FROM webhook_attempts").fetchone() == (0,)


async def test_the_relay_consumer_records_and_queues_each_new_delivery_once(
    client, admin, settings
):
    await _register(client, admin)
    # The consumer reads what the relay's app holds; the test client's app runs on another
    # event loop, so hand it the same kinds of things built on this one.
    engine = create_async_engine(async_database_url(settings.database_url))
    celery = create_celery_app(settings)
    state = SimpleNamespace(celery=celery, collections=CollectionRegistry.discover())
    consume = make_webhook_consumer(SimpleNamespace(state=state), engine)
    broker = redis.Redis.from_url(settings.redis_url)
    try:
        await consume([_event(7), _event(8, "update"), _event(9, "insert", "jobs")])
        await consume([_event(7), _event(8, "update")])  # handed on again after a crash
        queued = [json.loads(m) for m in broker.lrange("webhooks", 0, -1)]
    finally:
        broker.close()
        celery.close()
        await engine.dispose()
    rows = await _all(settings, "SELECT id::text, event_id FROM webhook_deliveries")
    assert sorted(event_id for _, event_id in rows) == [7, 8]
    sent = sorted(m["headers"]["argsrepr"] for m in queued if m["headers"]["task"] == DELIVER_TASK)
    assert sent == sorted(repr([delivery_id]) for delivery_id, _ in rows)
