"""Mail over SMTP, end to end: `litebase api` queues it, `litebase worker` renders it in the
user's language and delivers it over STARTTLS with a login to a real SMTP server on loopback
(aiosmtpd), retrying a server that says "try later"; the parsed message has a text and an HTML
part whose link opens the app's page with a token the API takes."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage

import httpx
import pytest

from tests.e2e.conftest import PASSWORD, Stack, mailed_link, mailed_token, stack_apart
from tests.fake_smtp import USERNAME, SmtpServer, smtp_server
from tests.support import Services

APP_URL = "https://notes.example.com"


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    with smtp_server(tmp_path_factory.mktemp("smtp"), "starttls") as server:
        yield server


@pytest.fixture(scope="module")
def mailing(
    stack: Stack,
    services: Services,
    smtp: SmtpServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    overrides = {
        **smtp.settings("starttls"),
        "MAIL_FROM": "Acme Notes <no-reply@notes.example.com>",
        "APP_NAME": "Acme Notes",
        "APP_URL": APP_URL,
        "MAIL_VERIFY_PATH": "/#/verify",
    }
    with stack_apart(stack, services, overrides, tmp_path_factory.mktemp("smtp-stack")) as apart:
        yield apart


def _parts(message: EmailMessage) -> tuple[str, str]:
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def test_a_german_verification_mail_arrives_over_smtp_and_its_link_works(mailing, smtp):
    email = "ada-smtp@example.com"
    with httpx.Client(base_url=mailing.base_url, timeout=10) as api:
        signed = api.post(
            "/auth/signup",
            json={"email": email, "password": PASSWORD},
            headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.8"},
        )
        assert signed.status_code == 201, signed.text
        message = smtp.wait_for(email)
        assert USERNAME in smtp.logins
        assert message["From"] == "Acme Notes <no-reply@notes.example.com>"
        assert message["Subject"] == "Bestätige deine E-Mail-Adresse"
        text, html = _parts(message)
        link = mailed_link({"text": text})
        assert link.startswith(f"{APP_URL}/#/verify?token=")
        assert f'href="{link}"' in html and "Acme Notes" in html
        assert 'style="' in html and "<style" not in html
        token = mailed_token({"text": text})
        bearer = {"Authorization": f"Bearer {signed.json()['access_token']}"}
        confirmed = api.post("/auth/verify", json={"token": token}, headers=bearer)
        assert confirmed.status_code == 200, confirmed.text
        assert confirmed.json()["email_verified"] is True


def test_a_server_that_says_try_later_gets_the_mail_on_a_celery_retry(mailing, smtp):
    email = "grace-smtp@example.com"
    with httpx.Client(base_url=mailing.base_url, timeout=10) as api:
        signed = api.post("/auth/signup", json={"email": email, "password": PASSWORD})
        assert signed.status_code == 201, signed.text
        smtp.wait_for(email)  # the verification mail: English, no Accept-Language
        smtp.refuse_with.append("451 4.3.0 try again later")
        assert api.post("/auth/otp", json={"email": email}).status_code == 202
        code_mail = smtp.wait_for(email, subject="Your sign-in code")
    assert smtp.refuse_with == []  # the first attempt was refused; the retry went through
    text, html = _parts(code_mail)
    code = code_mail["Subject"].rsplit(" ", 1)[-1]
    assert code in text.splitlines() and f">{code}</span>" in html
