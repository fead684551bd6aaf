"""The mail backends: console keeps mail in Redis, SMTP talks to a real SMTP server on loopback."""

from __future__ import annotations

import msgspec
import redis
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from backend.mail.service import SENT_MAIL_KEY, MailMessage, deliver
from tests.support import free_port

MAIL = MailMessage(to="ada@example.com", subject="Hello", text="Body line\n")


def test_the_console_backend_keeps_mail_for_reading(settings, redis_url):
    store = redis.Redis.from_url(redis_url)
    deliver(settings, MAIL, store)
    assert msgspec.json.decode(store.lindex(SENT_MAIL_KEY, 0), type=MailMessage) == MAIL


class Inbox(Message):
    def __init__(self) -> None:
        super().__init__()
        self.messages = []

    def handle_message(self, message) -> None:
        self.messages.append(message)


def test_the_smtp_backend_delivers_to_a_real_server(settings):
    inbox = Inbox()
    server = Controller(inbox, hostname="127.0.0.1", port=free_port())
    server.start()
    try:
        smtp = msgspec.structs.replace(
            settings,
            mail_backend="smtp",
            smtp_host="127.0.0.1",
            smtp_port=server.port,
            smtp_starttls=False,
            mail_from="Litebase <no-reply@example.com>",
        )
        deliver(smtp, MAIL, None)
    finally:
        server.stop()
    [message] = inbox.messages
    assert message["To"] == "ada@example.com"
    assert message["From"] == "Litebase <no-reply@example.com>"
    assert message["Subject"] == "Hello"
    assert message.get_payload().strip() == "Body line"
