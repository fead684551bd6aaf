"""Issue 18.5 (rest) and 18.13 (invitation token): an account nobody has proved the mailbox of
cannot build anything that outlives a later proof, accepting an invitation is such a proof,
and the invitation's token travels in the body, not in a URL that access logs keep."""

from __future__ import annotations

import msgspec
import pytest

from backend.auth.secrets import hash_token
from backend.config import settings_from_env
from tests.integration.conftest import PASSWORD, bearer, known_mailed_token, new_email
from tests.support import PROD_ENV


@pytest.fixture
def settings(settings):
    return msgspec.structs.replace(settings, auth_unverified_keys_and_orgs=False)


async def test_an_unverified_account_cannot_mint_keys_or_make_orgs(client, sign_up, sql):
    squatter = await sign_up(new_email("victim"))
    headers = bearer(squatter["access_token"])
    key = await client.post("/auth/api-keys", json={"name": "k"}, headers=headers)
    assert key.status_code == 403, key.text
    assert key.json()["code"] == "email_not_verified"
    org = await client.post("/orgs", json={"name": "Squat"}, headers=headers)
    assert org.status_code == 403, org.text
    assert org.json()["code"] == "email_not_verified"

    token = known_mailed_token(sql, squatter["user"]["id"], "verify_email")
    verified = await client.post("/auth/verify", json={"token": token}, headers=headers)
    assert verified.status_code == 200, verified.text
    mine = await client.post("/auth/api-keys", json={"name": "k"}, headers=headers)
    assert mine.status_code == 201, mine.text
    assert (await client.post("/orgs", json={"name": "Mine"}, headers=headers)).status_code == 201


def test_prod_refuses_unverified_accounts_keys_and_orgs_unless_told():
    prod = PROD_ENV
    assert settings_from_env(prod).unverified_may_act is False
    allowed = settings_from_env({**prod, "AUTH_UNVERIFIED_KEYS_AND_ORGS": "true"})
    assert allowed.unverified_may_act is True
    assert settings_from_env({}).unverified_may_act is True  # dev: sign up and try at once


async def test_accepting_an_invitation_ends_the_squatters_sessions_and_keys(
    client, sign_up, sql, make_admin
):
    """A squatter signed the victim's address up (allowed to keep a key here, as in dev); the
    victim, invited to an org, accepts from their own session: the mailbox is theirs."""
    victim_email = new_email("victim")
    squatter = await sign_up(victim_email)
    sql("UPDATE users SET email_verified = true WHERE id = %s", squatter["user"]["id"])
    key = (
        await client.post(
            "/auth/api-keys", json={"name": "k"}, headers=bearer(squatter["access_token"])
        )
    ).json()["key"]
    sql("UPDATE users SET email_verified = false WHERE id = %s", squatter["user"]["id"])

    inviter = await sign_up()
    sql("UPDATE users SET email_verified = true WHERE id = %s", inviter["user"]["id"])
    inviter_headers = bearer(inviter["access_token"])
    org = (await client.post("/orgs", json={"name": "Acme"}, headers=inviter_headers)).json()
    invited = await client.post(
        f"/orgs/{org['id']}/invitations", json={"email": victim_email}, headers=inviter_headers
    )
    assert invited.status_code == 201, invited.text
    token = "inv-known-token"
    sql("UPDATE org_invitations SET token_hash = %s", hash_token(token))

    victim = await client.post(
        "/auth/token", json={"grant_type": "password", "email": victim_email, "password": PASSWORD}
    )
    victim_headers = bearer(victim.json()["access_token"])
    in_path = await client.post(f"/invitations/{token}/accept", headers=victim_headers)
    assert in_path.status_code in (404, 405)  # a token in a URL ends up in access logs
    accepted = await client.post(
        "/invitations/accept", json={"token": token}, headers=victim_headers
    )
    assert accepted.status_code == 200, accepted.text
    assert (
        await client.get("/auth/me", headers=bearer(squatter["access_token"]))
    ).status_code == 401
    assert (await client.get("/auth/me", headers=bearer(key))).status_code == 401
    me = await client.get("/auth/me", headers=victim_headers)
    assert me.status_code == 200 and me.json()["email_verified"] is True
