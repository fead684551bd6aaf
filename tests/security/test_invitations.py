"""Issue 18.12: invitations were not rate-limited, and each one mails any address: an org was a
free mail cannon."""

from __future__ import annotations

import msgspec
import pytest

from tests.integration.conftest import bearer, new_email

LIMIT = 2


@pytest.fixture
def settings(settings):
    return msgspec.structs.replace(settings, invitations_per_hour=LIMIT)


async def test_invitations_are_limited_per_user_and_org(client, sign_up):
    owner = bearer((await sign_up())["access_token"])
    orgs = [
        (await client.post("/orgs", json={"name": n}, headers=owner)).json()["id"] for n in "ab"
    ]

    async def invite(org_id: str) -> int:
        response = await client.post(
            f"/orgs/{org_id}/invitations", json={"email": new_email("guest")}, headers=owner
        )
        if response.status_code == 429:
            assert response.json()["code"] == "too_many_invitations"
            assert 0 < int(response.headers["retry-after"]) <= 3600
        return response.status_code

    assert [await invite(orgs[0]) for _ in range(LIMIT + 1)] == [201] * LIMIT + [429]
    assert await invite(orgs[1]) == 201  # another org has its own allowance
