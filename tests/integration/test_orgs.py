"""Orgs: owners, admins and members, the last-owner rule, active-org switching, admin routes."""

from __future__ import annotations

import uuid

import jwt
import pytest

from backend.auth.secrets import hash_token, new_token
from tests.integration.conftest import PASSWORD, bearer, new_email


def _org_claim(tokens) -> str | None:
    return jwt.decode(tokens["access_token"], options={"verify_signature": False})["org"]


async def _refresh(client, tokens, **extra):
    return await client.post(
        "/auth/token",
        json={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **extra},
    )


@pytest.fixture
async def team(client, sign_up, add_member):
    """An org with an owner, an admin and a member, plus an outsider."""
    people = {
        role: await sign_up(new_email(role)) for role in ("owner", "admin", "member", "outsider")
    }
    org = (
        await client.post(
            "/orgs", json={"name": "Acme"}, headers=bearer(people["owner"]["access_token"])
        )
    ).json()
    add_member(org["id"], people["admin"]["user"]["id"], "admin")
    add_member(org["id"], people["member"]["user"]["id"], "member")
    return org, people


async def test_the_creator_owns_the_org_and_sees_it(client, sign_up):
    tokens = await sign_up()
    created = await client.post(
        "/orgs", json={"name": "Acme"}, headers=bearer(tokens["access_token"])
    )
    assert created.status_code == 201
    assert created.json()["role"] == "owner"
    mine = (await client.get("/orgs", headers=bearer(tokens["access_token"]))).json()["items"]
    assert [(o["name"], o["role"]) for o in mine] == [("Acme", "owner")]
    # The session had no org: its next token acts in this one.
    assert _org_claim((await _refresh(client, tokens)).json()) == created.json()["id"]


async def test_members_are_visible_to_members_only(client, team):
    org, people = team
    members = await client.get(
        f"/orgs/{org['id']}/members", headers=bearer(people["member"]["access_token"])
    )
    assert members.status_code == 200
    assert sorted(m["role"] for m in members.json()["items"]) == ["admin", "member", "owner"]
    outsider = await client.get(
        f"/orgs/{org['id']}/members", headers=bearer(people["outsider"]["access_token"])
    )
    assert outsider.status_code == 404


@pytest.mark.parametrize(
    ("actor", "invited_role", "status"),
    [
        ("owner", "owner", 201),
        ("owner", "member", 201),
        ("admin", "admin", 201),
        ("admin", "owner", 403),
        ("member", "member", 403),
        ("outsider", "member", 404),
    ],
)
async def test_who_may_invite_whom(client, team, actor, invited_role, status):
    org, people = team
    response = await client.post(
        f"/orgs/{org['id']}/invitations",
        json={"email": new_email("guest"), "role": invited_role},
        headers=bearer(people[actor]["access_token"]),
    )
    assert response.status_code == status
    if status == 201:
        assert "token" not in response.json()
        listed = await client.get(
            f"/orgs/{org['id']}/invitations", headers=bearer(people[actor]["access_token"])
        )
        assert response.json()["id"] in [i["id"] for i in listed.json()["items"]]


@pytest.mark.parametrize(
    ("actor", "target", "new_role", "status"),
    [
        ("owner", "member", "admin", 200),
        ("owner", "admin", "owner", 200),
        ("admin", "member", "admin", 200),
        ("admin", "member", "owner", 403),
        ("admin", "owner", "member", 403),
        ("member", "admin", "member", 403),
        ("outsider", "member", "admin", 404),
        ("owner", "owner", "member", 409),  # the last owner
    ],
)
async def test_who_may_change_roles(client, team, actor, target, new_role, status):
    org, people = team
    response = await client.patch(
        f"/orgs/{org['id']}/members/{people[target]['user']['id']}",
        json={"role": new_role},
        headers=bearer(people[actor]["access_token"]),
    )
    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["role"] == new_role


@pytest.mark.parametrize(
    ("actor", "target", "status"),
    [
        ("owner", "member", 204),
        ("admin", "member", 204),
        ("admin", "owner", 403),
        ("member", "admin", 403),
        ("member", "member", 204),  # leaving
        ("owner", "owner", 409),  # the last owner cannot leave
        ("outsider", "member", 404),
    ],
)
async def test_who_may_remove_whom(client, team, actor, target, status):
    org, people = team
    response = await client.delete(
        f"/orgs/{org['id']}/members/{people[target]['user']['id']}",
        headers=bearer(people[actor]["access_token"]),
    )
    assert response.status_code == status, response.text


async def test_a_second_owner_lets_the_first_step_down(client, team):
    org, people = team
    owner = bearer(people["owner"]["access_token"])
    promote = await client.patch(
        f"/orgs/{org['id']}/members/{people['admin']['user']['id']}",
        json={"role": "owner"},
        headers=owner,
    )
    assert promote.status_code == 200
    step_down = await client.patch(
        f"/orgs/{org['id']}/members/{people['owner']['user']['id']}",
        json={"role": "member"},
        headers=owner,
    )
    assert step_down.status_code == 200


async def test_switching_the_active_org(client, sign_up, add_member):
    tokens = await sign_up()
    headers = bearer(tokens["access_token"])
    first = (await client.post("/orgs", json={"name": "First"}, headers=headers)).json()
    second = (await client.post("/orgs", json={"name": "Second"}, headers=headers)).json()
    tokens = (await _refresh(client, tokens)).json()
    assert _org_claim(tokens) == first["id"]
    switched = await _refresh(client, tokens, org_id=second["id"])
    assert switched.status_code == 200
    tokens = switched.json()
    assert _org_claim(tokens) == second["id"]
    # The org sticks to the session across refreshes.
    tokens = (await _refresh(client, tokens)).json()
    assert _org_claim(tokens) == second["id"]


async def test_switching_to_an_org_you_are_not_in_is_refused(client, sign_up):
    owner, stranger = await sign_up(), await sign_up()
    org = (
        await client.post("/orgs", json={"name": "Private"}, headers=bearer(owner["access_token"]))
    ).json()
    refused = await _refresh(client, stranger, org_id=org["id"])
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["field"] == "org_id"
    # The refused attempt did not burn the refresh token.
    assert (await _refresh(client, stranger)).status_code == 200
    password = await client.post(
        "/auth/token",
        json={
            "grant_type": "password",
            "email": stranger["user"]["email"],
            "password": PASSWORD,
            "org_id": org["id"],
        },
    )
    assert password.status_code == 403


async def test_sign_in_acts_in_your_first_org_by_default(client, team):
    org, people = team
    signed_in = await client.post(
        "/auth/token",
        json={
            "grant_type": "password",
            "email": people["member"]["user"]["email"],
            "password": PASSWORD,
        },
    )
    assert _org_claim(signed_in.json()) == org["id"]


async def test_a_removed_member_no_longer_acts_in_the_org(client, team):
    org, people = team
    member = (
        await client.post(
            "/auth/token",
            json={
                "grant_type": "password",
                "email": people["member"]["user"]["email"],
                "password": PASSWORD,
            },
        )
    ).json()
    assert _org_claim(member) == org["id"]
    await client.delete(
        f"/orgs/{org['id']}/members/{people['member']['user']['id']}",
        headers=bearer(people["owner"]["access_token"]),
    )
    assert _org_claim((await _refresh(client, member)).json()) is None


async def test_admin_routes_are_for_admins(client, sign_up, make_admin):
    user, admin = await sign_up(), await sign_up()
    assert (
        await client.get("/admin/users", headers=bearer(user["access_token"]))
    ).status_code == 403
    assert (await client.get("/admin/users")).status_code == 401
    make_admin(admin["user"]["id"])
    admin = (
        await client.post(
            "/auth/token",
            json={"grant_type": "password", "email": admin["user"]["email"], "password": PASSWORD},
        )
    ).json()
    page = await client.get("/admin/users?limit=1", headers=bearer(admin["access_token"]))
    assert page.status_code == 200
    assert page.json()["total"] == 2 and len(page.json()["items"]) == 1
    assert page.json()["next_cursor"] is not None
    too_many = await client.get("/admin/users?limit=501", headers=bearer(admin["access_token"]))
    assert too_many.status_code == 422
    assert too_many.json()["errors"][0]["field"] == "limit"


async def test_an_admin_can_disable_a_user_and_their_sessions_end(client, sign_up, make_admin):
    user, admin = await sign_up(), await sign_up()
    make_admin(admin["user"]["id"])
    admin = (
        await client.post(
            "/auth/token",
            json={"grant_type": "password", "email": admin["user"]["email"], "password": PASSWORD},
        )
    ).json()
    disabled = await client.patch(
        f"/admin/users/{user['user']['id']}",
        json={"disabled": True},
        headers=bearer(admin["access_token"]),
    )
    assert disabled.status_code == 200
    assert (await client.get("/auth/me", headers=bearer(user["access_token"]))).status_code == 401
    sign_in = await client.post(
        "/auth/token",
        json={"grant_type": "password", "email": user["user"]["email"], "password": PASSWORD},
    )
    assert sign_in.status_code == 401


async def test_members_read_the_org_and_managers_rename_it(client, team):
    org, people = team
    path = f"/orgs/{org['id']}"
    one = await client.get(path, headers=bearer(people["member"]["access_token"]))
    assert one.status_code == 200
    assert (one.json()["name"], one.json()["role"]) == ("Acme", "member")
    assert (
        await client.get(path, headers=bearer(people["outsider"]["access_token"]))
    ).status_code == 404

    for actor, status in (("member", 403), ("outsider", 404)):
        refused = await client.patch(
            path, json={"name": "Mine now"}, headers=bearer(people[actor]["access_token"])
        )
        assert refused.status_code == status
    renamed = await client.patch(
        path, json={"name": "  Acme Inc.  "}, headers=bearer(people["admin"]["access_token"])
    )
    assert renamed.status_code == 200
    assert (renamed.json()["name"], renamed.json()["role"]) == ("Acme Inc.", "admin")
    mine = await client.get("/orgs", headers=bearer(people["owner"]["access_token"]))
    assert [o["name"] for o in mine.json()["items"]] == ["Acme Inc."]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "   "}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "A", "owner": 1}, "owner"),
    ],
)
async def test_a_bad_rename_names_the_field_and_changes_nothing(client, team, body, field):
    org, people = team
    response = await client.patch(
        f"/orgs/{org['id']}", json=body, headers=bearer(people["owner"]["access_token"])
    )
    assert response.status_code in (400, 422), response.text
    assert field in response.text
    one = await client.get(f"/orgs/{org['id']}", headers=bearer(people["owner"]["access_token"]))
    assert one.json()["name"] == "Acme"


async def _invitation_with_token(client, sql, org, inviter, role="member"):
    """An invitation made through the API, its token set to one the test knows (the real one
    only goes out by mail)."""
    email = new_email("guest")
    invited = await client.post(
        f"/orgs/{org['id']}/invitations",
        json={"email": email, "role": role},
        headers=bearer(inviter["access_token"]),
    )
    assert invited.status_code == 201, invited.text
    token = new_token()
    sql(
        "UPDATE org_invitations SET token_hash = %s WHERE id = %s",
        hash_token(token),
        invited.json()["id"],
    )
    return invited.json(), email, token


async def test_a_revoked_invitation_can_no_longer_be_accepted(client, team, sign_up, sql):
    org, people = team
    invitation, email, token = await _invitation_with_token(client, sql, org, people["admin"])
    path = f"/orgs/{org['id']}/invitations/{invitation['id']}"
    for actor, status in (("member", 403), ("outsider", 404), ("admin", 204), ("admin", 404)):
        revoked = await client.delete(path, headers=bearer(people[actor]["access_token"]))
        assert revoked.status_code == status, actor
    listed = await client.get(
        f"/orgs/{org['id']}/invitations", headers=bearer(people["admin"]["access_token"])
    )
    assert invitation["id"] not in [i["id"] for i in listed.json()["items"]]

    guest = await sign_up(email)
    accepted = await client.post(
        "/invitations/accept", json={"token": token}, headers=bearer(guest["access_token"])
    )
    assert accepted.status_code == 400
    assert accepted.json()["code"] == "invalid_token"


async def test_revoking_an_accepted_or_owner_invitation(client, team, sign_up, sql):
    org, people = team
    owners, _, _ = await _invitation_with_token(client, sql, org, people["owner"], role="owner")
    path = f"/orgs/{org['id']}/invitations/{owners['id']}"
    assert (
        await client.delete(path, headers=bearer(people["admin"]["access_token"]))
    ).status_code == 403

    invitation, email, token = await _invitation_with_token(client, sql, org, people["owner"])
    guest = await sign_up(email)
    accepted = await client.post(
        "/invitations/accept", json={"token": token}, headers=bearer(guest["access_token"])
    )
    assert accepted.status_code == 200, accepted.text
    late = await client.delete(
        f"/orgs/{org['id']}/invitations/{invitation['id']}",
        headers=bearer(people["owner"]["access_token"]),
    )
    assert late.status_code == 409
    assert late.json()["code"] == "already_accepted"
    members = await client.get(
        f"/orgs/{org['id']}/members", headers=bearer(people["owner"]["access_token"])
    )
    assert guest["user"]["id"] in [m["user_id"] for m in members.json()["items"]]


async def test_only_owners_delete_an_org_and_its_records_go_with_it(client, team, sql):
    org, people = team
    owner = bearer(people["owner"]["access_token"])
    # The owner acts in the org (their first), so a note they make belongs to it.
    acting = (await _refresh(client, people["owner"])).json()
    note = await client.post(
        "/collections/notes/records",
        json={"title": "plans"},
        headers=bearer(acting["access_token"]),
    )
    assert note.status_code == 201 and note.json()["org"] == org["id"]
    path = f"/orgs/{org['id']}"
    for actor, status in (("admin", 403), ("member", 403), ("outsider", 404)):
        refused = await client.delete(path, headers=bearer(people[actor]["access_token"]))
        assert refused.status_code == status
    # A token's org is its session's: the owner's session acts in the org now.
    assert (await client.delete(path, headers=owner)).status_code == 401
    assert (await client.delete(path, headers=bearer(acting["access_token"]))).status_code == 204

    # The session acts in no org now, as the first token said: it works again.
    assert (await client.get(path, headers=owner)).status_code == 404
    assert (await client.get("/orgs", headers=owner)).json()["items"] == []
    assert sql("SELECT count(*) FROM org_members WHERE org_id = %s", org["id"]) == [(0,)]
    assert sql("SELECT count(*) FROM notes WHERE id = %s", note.json()["id"]) == [(0,)]
    # The delete reached the outbox like any other, for realtime, webhooks and vector sync.
    deletes = sql(
        "SELECT count(*) FROM outbox WHERE op = 'delete' AND record_id = %s", note.json()["id"]
    )
    assert deletes == [(1,)]
    # A token naming the deleted org stops at once (tests/security/test_removed_member.py).
    late = await client.post(
        "/collections/notes/records", json={"title": "x"}, headers=bearer(acting["access_token"])
    )
    assert late.status_code == 401, late.text
    # The owner's session no longer acts in it.
    assert _org_claim((await _refresh(client, acting)).json()) is None


async def test_an_admin_deletes_a_user_and_their_sessions_end(client, sign_up, admin):
    user, other = await sign_up(), await sign_up()
    path = f"/admin/users/{user['user']['id']}"
    assert (await client.delete(path, headers=bearer(other["access_token"]))).status_code == 403
    assert (await client.delete(path, headers=admin)).status_code == 204
    assert (await client.get("/auth/me", headers=bearer(user["access_token"]))).status_code == 401
    assert (await client.delete(path, headers=admin)).status_code == 404
    org = await client.post("/orgs", json={"name": "Solo"}, headers=bearer(other["access_token"]))
    refused = await client.delete(f"/admin/users/{other['user']['id']}", headers=admin)
    assert refused.status_code == 409
    assert refused.json()["orgs"] == [org.json()["id"]]


async def test_admins_find_users_by_email_or_name_and_role(client, sign_up, admin):
    marker = uuid.uuid4().hex[:8]
    grace = await sign_up(f"grace-{marker}@example.com", name="Grace Hopper")
    await sign_up(f"other-{marker}@example.com", name="Ada")
    found = await client.get("/admin/users", params={"q": f"GRACE-{marker}"}, headers=admin)
    assert [u["id"] for u in found.json()["items"]] == [grace["user"]["id"]]
    assert found.json()["total"] == 1
    by_name = await client.get("/admin/users", params={"q": "hopper"}, headers=admin)
    assert [u["id"] for u in by_name.json()["items"]] == [grace["user"]["id"]]
    # % and _ are literal, not wildcards.
    assert (await client.get("/admin/users", params={"q": "%"}, headers=admin)).json()["total"] == 0
    admins = await client.get("/admin/users", params={"role": "admin"}, headers=admin)
    assert {u["role"] for u in admins.json()["items"]} == {"admin"}
    assert admins.json()["total"] == 1
    bad = await client.get("/admin/users", params={"role": "root"}, headers=admin)
    assert bad.status_code in (400, 422) and "role" in bad.text
