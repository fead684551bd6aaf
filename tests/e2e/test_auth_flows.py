"""Auth flows that go through mail: a real worker delivers to the console backend's store."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.e2e.conftest import APP_URL, mailed_code, mailed_link, mailed_token, run_python
from tests.waiting import eventually_blocking

PASSWORD = "correct horse battery staple"


def _email(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}@example.com"


@pytest.fixture
def api(stack):
    with httpx.Client(base_url=stack.base_url, timeout=10) as client:
        yield client


def _token_in(mail: dict[str, str], page: str) -> str:
    """The token of the mail's link, which leads to ``page`` of the app (APP_URL), not the API;
    the HTML part links to the same place."""
    link = mailed_link(mail)
    assert link.startswith(f"{APP_URL}{page}?token="), link
    assert f'href="{link}"' in mail["html"]
    return mailed_token(mail)


def _bearer(tokens) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def _sign_up(api, email: str) -> dict:
    response = api.post("/auth/signup", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    return response.json()


def test_sign_up_mails_a_verification_token_that_works_once(api, inbox):
    email = _email("verify")
    tokens = _sign_up(api, email)
    token = _token_in(inbox(email, "Confirm your email"), "/verify")
    # Confirmed from the signed-in app (its bearer sent along), so that session stays; every
    # other session of a newly verified account ends (docs/security.md, pre-hijacking).
    confirmed = api.post("/auth/verify", json={"token": token}, headers=_bearer(tokens))
    assert confirmed.status_code == 200
    assert confirmed.json()["email_verified"] is True
    assert api.get("/auth/me", headers=_bearer(tokens)).json()["email_verified"] is True
    again = api.post("/auth/verify", json={"token": token})
    assert again.status_code == 400
    assert again.json()["errors"][0]["field"] == "token"


def test_a_verification_mail_can_be_requested_again(api, inbox):
    email = _email("reverify")
    tokens = _sign_up(api, email)
    first = _token_in(inbox(email, "Confirm your email"), "/verify")
    assert api.post("/auth/verify", json={}, headers=_bearer(tokens)).status_code == 200
    second = eventually_blocking(
        lambda: (
            (token := _token_in(inbox(email, "Confirm your email"), "/verify")) != first and token
        ),
        what="a second verification mail",
    )
    assert api.post("/auth/verify", json={"token": second}).status_code == 200
    assert api.post("/auth/verify", json={}).status_code == 401


def test_forgot_password_is_202_either_way_and_the_reset_works_once(api, inbox):
    email = _email("reset")
    old = _sign_up(api, email)
    unknown = api.post("/auth/password/forgot", json={"email": _email("nobody")})
    known = api.post("/auth/password/forgot", json={"email": email})
    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()
    token = _token_in(inbox(email, "Reset your password"), "/reset-password")
    reset = api.post(
        "/auth/password/reset", json={"token": token, "new_password": "a new password!"}
    )
    assert reset.status_code == 200
    # Every session ended with the old password.
    assert api.get("/auth/me", headers=_bearer(old)).status_code == 401
    sign_in = {"grant_type": "password", "email": email}
    assert api.post("/auth/token", json={**sign_in, "password": PASSWORD}).status_code == 401
    assert (
        api.post("/auth/token", json={**sign_in, "password": "a new password!"}).status_code == 200
    )
    reused = api.post(
        "/auth/password/reset", json={"token": token, "new_password": "yet another one"}
    )
    assert reused.status_code == 400


def test_an_invitation_brings_a_new_user_into_the_org(api, inbox):
    owner = _sign_up(api, _email("owner"))
    org = api.post("/orgs", json={"name": "Acme"}, headers=_bearer(owner)).json()
    guest_email = _email("guest")
    invited = api.post(
        f"/orgs/{org['id']}/invitations",
        json={"email": guest_email, "role": "admin"},
        headers=_bearer(owner),
    )
    assert invited.status_code == 201
    token = _token_in(inbox(guest_email, "invited to Acme"), "/accept-invitation")

    stranger = _sign_up(api, _email("stranger"))
    wrong = api.post("/invitations/accept", json={"token": token}, headers=_bearer(stranger))
    assert wrong.status_code == 403

    guest = _sign_up(api, guest_email)
    accepted = api.post("/invitations/accept", json={"token": token}, headers=_bearer(guest))
    assert accepted.status_code == 200
    assert accepted.json() == {**accepted.json(), "id": org["id"], "role": "admin"}
    assert (
        api.post("/invitations/accept", json={"token": token}, headers=_bearer(guest)).status_code
        == 400
    )

    refreshed = api.post(
        "/auth/token",
        json={
            "grant_type": "refresh_token",
            "refresh_token": guest["refresh_token"],
            "org_id": org["id"],
        },
    ).json()
    members = api.get(f"/orgs/{org['id']}/members", headers=_bearer(refreshed))
    assert sorted(m["role"] for m in members.json()["items"]) == ["admin", "owner"]
    assert api.get("/auth/me", headers=_bearer(refreshed)).json()["email_verified"] is True


def test_create_admin_makes_an_admin_who_can_use_admin_routes(api, stack):
    email = _email("root")
    result = run_python(
        "backend.cli", "create-admin", "--email", email, "--password", PASSWORD, env=stack.env
    )
    assert result.returncode == 0, result.stderr
    assert "is ready" in result.stdout
    tokens = api.post(
        "/auth/token", json={"grant_type": "password", "email": email, "password": PASSWORD}
    )
    assert tokens.json()["user"]["role"] == "admin"
    assert api.get("/admin/users", headers=_bearer(tokens.json())).status_code == 200


def test_create_admin_refuses_a_short_password(stack):
    result = run_python(
        "backend.cli", "create-admin", "--email", _email("x"), "--password", "short", env=stack.env
    )
    assert result.returncode != 0
    assert "length >= 8" in result.stderr


def test_changing_the_email_waits_for_the_new_address_to_confirm(api, inbox):
    old_email, new_email = _email("old"), _email("new")
    tokens = _sign_up(api, old_email)
    asked = api.post(
        "/auth/email",
        json={"new_email": new_email, "password": PASSWORD},
        headers=_bearer(tokens),
    )
    assert asked.status_code == 202, asked.text
    notice = inbox(old_email, "being changed")
    assert new_email in notice["text"]
    # Nothing changes until the new address confirms.
    assert api.get("/auth/me", headers=_bearer(tokens)).json()["email"] == old_email
    token = _token_in(inbox(new_email, "Confirm your new email"), "/confirm-email")
    confirmed = api.post("/auth/email/confirm", json={"token": token})
    assert confirmed.status_code == 200, confirmed.text
    assert (confirmed.json()["email"], confirmed.json()["email_verified"]) == (new_email, True)
    sign_in = {"grant_type": "password", "password": PASSWORD}
    assert api.post("/auth/token", json={**sign_in, "email": new_email}).status_code == 200
    assert api.post("/auth/token", json={**sign_in, "email": old_email}).status_code == 401
    assert api.post("/auth/email/confirm", json={"token": token}).status_code == 400


def test_a_mailed_sign_in_code_signs_in_without_the_password(api, inbox):
    email = _email("otp")
    _sign_up(api, email)
    assert api.post("/auth/otp", json={"email": email}).status_code == 202
    mail = inbox(email, "sign-in code")
    code = mailed_code(mail)
    assert code in mail["subject"]
    grant = {"grant_type": "otp", "email": email, "code": code}
    tokens = api.post("/auth/token", json=grant)
    assert tokens.status_code == 200, tokens.text
    assert api.get("/auth/me", headers=_bearer(tokens.json())).json()["email"] == email
    assert api.post("/auth/token", json=grant).status_code == 401
