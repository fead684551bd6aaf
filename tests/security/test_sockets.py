"""Issue 18.3: realtime sockets outlived their authorization. Sockets are opened on a second
API process (`litebase api` as shipped, 3-second access tokens); the revocations are made
through the stack's, so each close crosses processes (Redis pub/sub)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.e2e.conftest import litebase_api, sql
from tests.integration.conftest import in_org

pytestmark = pytest.mark.xdist_group("e2e")  # shares the e2e stack's worker

PASSWORD = "correct horse battery staple"
CLOSED_WITHIN_SECONDS = 1.0


@pytest.fixture(scope="module")
def second_api(stack, tmp_path_factory) -> Iterator[str]:
    env = {**stack.env, "ACCESS_TOKEN_TTL_SECONDS": "3"}
    with litebase_api(env, tmp_path_factory.mktemp("sockets") / "api.log", "/ready") as base:
        yield base


@pytest.fixture
async def api(stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
        yield client


async def _user(api) -> dict:
    email = f"ws-{uuid.uuid4().hex[:10]}@example.com"
    response = await api.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201
    return response.json()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _frame(socket, timeout: float = 10) -> dict:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


async def _connect(base: str, token: str):
    socket = await websockets.connect(base.replace("http://", "ws://") + "/realtime")
    await socket.send(json.dumps({"type": "auth", "token": token}))
    assert (await _frame(socket))["type"] == "ready"
    return socket


async def _closed(socket) -> int:
    """The close code, once the server closes the socket (within the promised second)."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await _frame(socket, CLOSED_WITHIN_SECONDS)
    return closed.value.rcvd.code


async def _key(api, token: str, **body) -> tuple[str, str]:
    created = await api.post("/auth/api-keys", json={"name": "ws", **body}, headers=_bearer(token))
    assert created.status_code == 201, created.text
    return created.json()["key"], created.json()["api_key"]["id"]


async def test_revoking_an_api_key_closes_its_sockets(api, second_api):
    user = await _user(api)
    key, key_id = await _key(api, user["access_token"])
    socket = await _connect(second_api, key)
    revoked = await api.delete(f"/auth/api-keys/{key_id}", headers=_bearer(user["access_token"]))
    assert revoked.status_code == 204
    assert await _closed(socket) == 4401


async def test_disabling_a_user_closes_their_session_and_key_sockets(api, second_api, stack):
    admin = await _user(api)
    sql(stack, "UPDATE users SET role = 'admin' WHERE id = %s", admin["user"]["id"])
    admin_token = (
        await api.post(
            "/auth/token",
            json={"grant_type": "password", "email": admin["user"]["email"], "password": PASSWORD},
        )
    ).json()["access_token"]
    user = await _user(api)
    key, _ = await _key(api, user["access_token"])
    sockets = [await _connect(second_api, user["access_token"]), await _connect(second_api, key)]
    disabled = await api.patch(
        f"/admin/users/{user['user']['id']}", json={"disabled": True}, headers=_bearer(admin_token)
    )
    assert disabled.status_code == 200
    assert [await _closed(socket) for socket in sockets] == [4401, 4401]


async def test_deleting_an_account_closes_its_key_sockets(api, second_api):
    user = await _user(api)
    key, _ = await _key(api, user["access_token"])
    socket = await _connect(second_api, key)
    deleted = await api.request(
        "DELETE", "/auth/me", json={"password": PASSWORD}, headers=_bearer(user["access_token"])
    )
    assert deleted.status_code == 204
    assert await _closed(socket) == 4401


async def test_removing_a_member_closes_their_sockets_in_that_org(api, second_api, stack):
    owner, member = await _user(api), await _user(api)
    org_id = (
        await api.post("/orgs", json={"name": "acme"}, headers=_bearer(owner["access_token"]))
    ).json()["id"]
    sql(
        stack,
        "INSERT INTO org_members (id, org_id, user_id, role, created_at, updated_at)"
        " VALUES (gen_random_uuid(), %s, %s, 'member', now(), now())",
        org_id,
        member["user"]["id"],
    )
    as_member = await in_org(api, member, org_id)
    socket = await _connect(second_api, as_member["access_token"])
    removed = await api.delete(
        f"/orgs/{org_id}/members/{member['user']['id']}", headers=_bearer(owner["access_token"])
    )
    assert removed.status_code == 204
    assert await _closed(socket) == 4401


async def test_re_auth_into_another_org_leaves_the_first_orgs_rooms(api, second_api):
    user = await _user(api)
    orgs = [
        (await api.post("/orgs", json={"name": n}, headers=_bearer(user["access_token"]))).json()[
            "id"
        ]
        for n in ("first", "second")
    ]
    first = await in_org(api, user, orgs[0])
    socket = await _connect(second_api, first["access_token"])
    await socket.send(json.dumps({"type": "subscribe", "id": "r", "channel": "room:lobby"}))
    assert await _frame(socket) == {"type": "subscribed", "id": "r"}
    assert (await _frame(socket))["type"] == "presence"
    second = await in_org(api, first, orgs[1])
    await socket.send(json.dumps({"type": "auth", "token": second["access_token"]}))
    assert await _frame(socket) == {"type": "unsubscribed", "id": "r", "reason": "org_changed"}
    await socket.close()


async def test_while_a_token_is_expired_only_auth_and_ping_are_served(api, second_api):
    async with httpx.AsyncClient(base_url=second_api, timeout=10) as short:
        user = await _user(short)  # a 3-second access token
        socket = await _connect(second_api, user["access_token"])
        expired = await _frame(socket, 8)
        assert (expired["type"], expired["code"]) == ("error", "token_expired")
        await socket.send(
            json.dumps({"type": "subscribe", "id": "s", "channel": "collection:notes"})
        )
        refused = await _frame(socket)
        assert (refused["type"], refused["code"], refused["ref"]) == ("error", "token_expired", "s")
        await socket.send(json.dumps({"type": "ping"}))
        assert await _frame(socket) == {"type": "pong"}
        fresh = await short.post(
            "/auth/token",
            json={"grant_type": "refresh_token", "refresh_token": user["refresh_token"]},
        )
        await socket.send(json.dumps({"type": "auth", "token": fresh.json()["access_token"]}))
        await socket.send(
            json.dumps({"type": "subscribe", "id": "s", "channel": "collection:notes"})
        )
        assert await _frame(socket) == {"type": "subscribed", "id": "s"}
        await socket.close()
