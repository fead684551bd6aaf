"""The mail backends: console keeps the rendered mail in Redis; SMTP delivers it, as HTML and
text, to a real SMTP server on loopback over STARTTLS or implicit TLS with a login, and tells
failures worth retrying from final ones."""

from __future__ import annotations

import socket
import time

import aiosmtplib
import msgspec
import pytest
import redis

from backend.config import settings_from_env
from backend.mail.compose import Mail, MailKind
from backend.mail.service import SENT_MAIL_KEY, SentMail, TransientMailError, deliver
from tests.fake_smtp import IMPLICIT_TLS_WARNING, USERNAME, smtp_server
from tests.support import free_port

APP = "https://app.example.com"
MAIL = Mail(
    kind=MailKind.PASSWORD_RESET,
    to="ada@example.com",
    locale="de",
    values={"token": "tok-123_abc", "minutes": 60},
)
LINK = f"{APP}/reset-password?token=tok-123_abc"


def _smtp_settings(server, security: str, **more: str):
    return settings_from_env(
        {
            "APP_URL": APP,
            "MAIL_FROM": "Litebase <no-reply@example.com>",
            **server.settings(security),
            **more,
        }
    )


def test_the_console_backend_keeps_the_rendered_mail_for_reading(redis_url):
    store = redis.Redis.from_url(redis_url)
    deliver(settings_from_env({"APP_URL": APP}), MAIL, store)
    sent = msgspec.json.decode(store.lindex(SENT_MAIL_KEY, 0), type=SentMail)
    assert (sent.to, sent.kind, sent.locale) == ("ada@example.com", "password_reset", "de")
    assert sent.subject == "Setze dein Passwort zurück"
    assert LINK in sent.text
    assert f'href="{LINK}"' in sent.html


@pytest.mark.filterwarnings(IMPLICIT_TLS_WARNING)
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_smtp_delivers_html_and_text_over_tls_with_a_login(tmp_path, security):
    with smtp_server(tmp_path, security) as server:
        deliver(_smtp_settings(server, security), MAIL, None)
        [message] = server.messages
    assert server.logins == [USERNAME]
    assert message["To"] == "ada@example.com"
    assert message["From"] == "Litebase <no-reply@example.com>"
    assert message["Subject"] == "Setze dein Passwort zurück"
    assert message["Content-Language"] == "de"
    assert message["Message-ID"].endswith("@example.com>")
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert LINK in text
    assert f'href="{LINK}"' in html
    assert "style=" in html and "<style" not in html  # the stylesheet went inline


def test_a_server_whose_certificate_is_not_trusted_gets_nothing(tmp_path):
    with smtp_server(tmp_path, "starttls") as server:
        untrusted = _smtp_settings(server, "starttls", SMTP_CA_FILE="")
        with pytest.raises(TransientMailError, match="certificate"):
            deliver(untrusted, MAIL, None)
        assert server.messages == [] and server.logins == []


def test_a_4xx_answer_or_no_server_is_tried_again_a_5xx_answer_is_not(tmp_path):
    with smtp_server(tmp_path, "starttls") as server:
        settings = _smtp_settings(server, "starttls")
        server.refuse_with.append("451 4.3.0 try again later")
        with pytest.raises(TransientMailError, match="451"):
            deliver(settings, MAIL, None)
        server.refuse_with.append("554 5.6.0 message refused")
        with pytest.raises(aiosmtplib.SMTPResponseException) as final:
            deliver(settings, MAIL, None)
        assert not isinstance(final.value, TransientMailError) and final.value.code == 554
        deliver(settings, MAIL, None)  # the server takes it now
        assert len(server.messages) == 1
    nobody = _smtp_settings(server, "starttls", SMTP_PORT=str(free_port()))
    with pytest.raises(TransientMailError):
        deliver(nobody, MAIL, None)


def test_a_server_that_never_answers_is_given_up_on_after_smtp_timeout_seconds(tmp_path):
    """It accepts the connection and says nothing: the worker gives up after the timeout (and
    the task tries again later) instead of holding its process for good."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        settings = settings_from_env(
            {
                "MAIL_BACKEND": "smtp",
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": str(port),
                "SMTP_SECURITY": "none",
                "SMTP_TIMEOUT_SECONDS": "0.5",
            }
        )
        started = time.monotonic()
        with pytest.raises(TransientMailError):
            deliver(settings, MAIL, None)
        assert time.monotonic() - started < 5
