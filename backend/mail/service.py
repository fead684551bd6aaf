"""Queue mail from the API; deliver it from a worker (console backend or SMTP)."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from email.message import EmailMessage

import msgspec
import redis
from celery import Celery

from backend.config import Settings

log = logging.getLogger(__name__)

SEND_MAIL_TASK = "mail.send"
# The console backend keeps the newest mails here, for people in dev and for tests.
SENT_MAIL_KEY = "litebase:mail:sent"
SENT_MAIL_KEEP = 1000


class MailMessage(msgspec.Struct, frozen=True, kw_only=True):
    to: str
    subject: str
    text: str


class Mailer:
    """Hands mail to the workers; never blocks a request on SMTP."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    async def send(self, message: MailMessage) -> bool:
        """Queue ``message``; False (and a log line) if the broker refused it."""
        try:
            await asyncio.to_thread(
                self._celery.send_task, SEND_MAIL_TASK, kwargs=msgspec.to_builtins(message)
            )
        except Exception:
            log.exception("could not queue mail %r to %s", message.subject, message.to)
            return False
        return True


def deliver(settings: Settings, message: MailMessage, store: redis.Redis | None) -> None:
    """Send one mail now, through the configured backend (called by the worker)."""
    if settings.mail_backend == "console":
        log.info("mail to %s: %s\n%s", message.to, message.subject, message.text)
        if store is not None:
            pipe = store.pipeline()
            pipe.lpush(SENT_MAIL_KEY, msgspec.json.encode(message))
            pipe.ltrim(SENT_MAIL_KEY, 0, SENT_MAIL_KEEP - 1)
            pipe.execute()
        return
    mail = EmailMessage()
    mail["From"] = settings.mail_from
    mail["To"] = message.to
    mail["Subject"] = message.subject
    mail.set_content(message.text)
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=30) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            smtp.login(settings.smtp_username, settings.smtp_password)
        smtp.send_message(mail)
