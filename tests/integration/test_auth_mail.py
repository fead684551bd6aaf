"""What auth mails and in which language: the user's locale (given at sign-up, else from
Accept-Language, changeable on /auth/me), the mails queued in it with links that work, and the
notice of a sign-in from a new device."""

from __future__ import annotations

import msgspec
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.mail.compose import MailKind, compose
from tests.integration.conftest import PASSWORD, bearer, new_email


async def test_sign_up_keeps_the_locale_given_else_the_best_accept_language(client, sign_up):
    given = await sign_up(locale="de_AT")
    assert given["user"]["locale"] == "de-at"
    asked = await client.post(
        "/auth/signup",
        json={"email": new_email(), "password": PASSWORD},
        headers={"Accept-Language": "fr-CH, fr;q=0.9, de;q=0.7, en;q=0.5"},
    )
    assert asked.json()["user"]["locale"] == "de"  # the first language mail is written in
    unknown = await client.post(
        "/auth/signup",
        json={"email": new_email(), "password": PASSWORD},
        headers={"Accept-Language": "fr, es"},
    )
    assert unknown.json()["user"]["locale"] is None  # English
    refused = await client.post(
        "/auth/signup",
        json={"email": new_email(), "password": PASSWORD, "locale": "deutsch!"},
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "locale"


async def test_people_change_the_language_of_their_mails(client, sign_up):
    me = bearer((await sign_up())["access_token"])
    changed = await client.patch("/auth/me", json={"locale": "de"}, headers=me)
    assert changed.status_code == 200, changed.text
    assert (await client.get("/auth/me", headers=me)).json()["locale"] == "de"
    bad = await client.patch("/auth/me", json={"locale": "x" * 40}, headers=me)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "locale"


async def test_mail_goes_out_in_the_users_language_with_a_link_that_works(
    client, sign_up, settings, queued_mail
):
    account = await sign_up(locale="de")
    [verify] = [m for m in queued_mail() if m.kind == MailKind.VERIFY_EMAIL]
    assert (verify.to, verify.locale) == (account["user"]["email"], "de")
    mail = compose(msgspec.structs.replace(settings, app_url="https://app.example.com"), verify)
    assert mail.subject == "Bestätige deine E-Mail-Adresse"
    link = f"https://app.example.com/verify?token={verify.values['token']}"
    assert link in mail.text and f'href="{link}"' in mail.html
    # The app's page posts the token it was given (signed in: its session stays); the API
    # takes it.
    me = bearer(account["access_token"])
    token = {"token": verify.values["token"]}
    confirmed = await client.post("/auth/verify", json=token, headers=me)
    assert confirmed.json()["email_verified"] is True

    assert (await client.patch("/auth/me", json={"locale": "en"}, headers=me)).status_code == 200
    await client.post("/auth/password/forgot", json={"email": account["user"]["email"]})
    [reset] = [m for m in queued_mail() if m.kind == MailKind.PASSWORD_RESET]
    assert reset.locale == "en"


async def test_an_invitation_speaks_the_invitees_language_else_the_inviters(
    client, sign_up, queued_mail
):
    owner = await sign_up(locale="de", name="Ada")
    me = bearer(owner["access_token"])
    org = (await client.post("/orgs", json={"name": "Analytical"}, headers=me)).json()
    stranger, member = new_email("stranger"), new_email("member")
    await sign_up(member)  # an account without a language: English
    for email in (stranger, member):
        invited = await client.post(
            f"/orgs/{org['id']}/invitations", json={"email": email, "role": "member"}, headers=me
        )
        assert invited.status_code == 201, invited.text
    mails = {m.to: m for m in queued_mail() if m.kind == MailKind.INVITATION}
    assert (mails[stranger].locale, mails[member].locale) == ("de", None)
    assert mails[stranger].values == {
        **mails[stranger].values,
        "org": "Analytical",
        "inviter": "Ada",
        "role": "member",
    }


def _sign_in(email: str, agent: str) -> dict:
    return {
        "json": {"grant_type": "password", "email": email, "password": PASSWORD},
        "headers": {"User-Agent": agent},
    }


async def test_a_sign_in_from_a_new_device_is_mailed_to_the_owner(client, sign_up, queued_mail):
    def notices():
        return [m for m in queued_mail() if m.kind == MailKind.NEW_SIGN_IN]

    email = new_email()
    signed = await client.post(
        "/auth/signup", json={"email": email, "password": PASSWORD}, headers={"User-Agent": "A"}
    )
    assert signed.status_code == 201
    assert (await client.post("/auth/token", **_sign_in(email, "A"))).status_code == 200
    assert notices() == []  # the device it signed up from
    assert (await client.post("/auth/token", **_sign_in(email, "Firefox B"))).status_code == 200
    [notice] = notices()
    assert notice.to == email
    assert notice.values == {**notice.values, "device": "Firefox B", "ip": "testclient"}
    assert (await client.post("/auth/token", **_sign_in(email, "Firefox B"))).status_code == 200
    assert len(notices()) == 1  # known now
    # A failed sign-in tells nobody anything.
    wrong = _sign_in(email, "C")
    wrong["json"]["password"] = "not the password"
    assert (await client.post("/auth/token", **wrong)).status_code == 401
    assert len(notices()) == 1


async def test_the_new_sign_in_mail_can_be_turned_off(settings, clock, queued_mail):
    quiet = msgspec.structs.replace(settings, auth_new_sign_in_mail=False)
    async with AsyncTestClient(create_app(quiet, clock=clock)) as client:
        email = new_email()
        await client.post("/auth/signup", json={"email": email, "password": PASSWORD})
        assert (await client.post("/auth/token", **_sign_in(email, "Other"))).status_code == 200
    assert [m for m in queued_mail() if m.kind == MailKind.NEW_SIGN_IN] == []
