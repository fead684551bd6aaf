"""Issue 18 (matrix: a removed member): an access token carried its org claim until it expired,
so a member removed from an org (or whose org was deleted) went on reading and writing its
records over HTTP for up to ACCESS_TOKEN_TTL_SECONDS. A token's org must now be its
session's: removal and deletion take the org from the session, and the token stops at once."""

from __future__ import annotations

from tests.integration.conftest import bearer, in_org

PROJECTS = "/collections/projects/records"


async def _org_with_member(client, sign_up, add_member):
    owner = await sign_up()
    owner_headers = bearer(owner["access_token"])
    org = (await client.post("/orgs", json={"name": "Acme"}, headers=owner_headers)).json()
    owner_in = bearer((await in_org(client, owner, org["id"]))["access_token"])
    made = await client.post(PROJECTS, json={"name": "plans"}, headers=owner_in)
    assert made.status_code == 201, made.text
    member = await sign_up()
    add_member(org["id"], member["user"]["id"])
    member_tokens = await in_org(client, member, org["id"])
    member_in = bearer(member_tokens["access_token"])
    listed = await client.get(PROJECTS, headers=member_in)
    assert [p["name"] for p in listed.json()["items"]] == ["plans"]
    return org, owner_in, member, member_tokens, member_in, made.json()["id"]


async def test_a_removed_members_token_stops_at_once(client, sign_up, add_member):
    org, owner_in, member, member_tokens, member_in, project = await _org_with_member(
        client, sign_up, add_member
    )
    removed = await client.delete(
        f"/orgs/{org['id']}/members/{member['user']['id']}", headers=owner_in
    )
    assert removed.status_code == 204, removed.text
    for method, path, body in (
        ("GET", PROJECTS, None),
        ("GET", f"{PROJECTS}/{project}", None),
        ("PATCH", f"{PROJECTS}/{project}", {"name": "pwned"}),
        ("POST", PROJECTS, {"name": "mine now"}),
    ):
        response = await client.request(method, path, json=body, headers=member_in)
        assert response.status_code == 401, (method, path, response.text)
        assert response.json()["code"] == "org_changed"
    # A refresh gives a token without the org: theirs to use, the org's records out of reach.
    refreshed = await client.post(
        "/auth/token",
        json={"grant_type": "refresh_token", "refresh_token": member_tokens["refresh_token"]},
    )
    assert refreshed.status_code == 200, refreshed.text
    mine = bearer(refreshed.json()["access_token"])
    assert (await client.get(PROJECTS, headers=mine)).json()["items"] == []
    assert (await client.get(f"{PROJECTS}/{project}", headers=mine)).status_code == 404


async def test_a_deleted_orgs_tokens_stop_at_once(client, sign_up, add_member):
    org, owner_in, _, _, member_in, _ = await _org_with_member(client, sign_up, add_member)
    assert (await client.delete(f"/orgs/{org['id']}", headers=owner_in)).status_code == 204
    for headers in (owner_in, member_in):
        response = await client.get(PROJECTS, headers=headers)
        assert response.status_code == 401, response.text


async def test_a_token_for_the_org_a_session_left_is_refused(client, sign_up, add_member):
    """Switching org moves the session: the previous org's token ends with the switch."""
    _, _, _, member_tokens, member_in, _ = await _org_with_member(client, sign_up, add_member)
    other = (await client.post("/orgs", json={"name": "Mine"}, headers=member_in)).json()
    switched = await in_org(client, member_tokens, other["id"])
    assert (await client.get(PROJECTS, headers=member_in)).status_code == 401
    now = await client.get(PROJECTS, headers=bearer(switched["access_token"]))
    assert now.status_code == 200 and now.json()["items"] == []
