"""Queue mail from the API; render and deliver it from a worker (console backend or SMTP)."""

from __future__ import annotations

import asyncio
import logging
import ssl
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

import aiosmtplib
import msgspec
import redis
from celery import Celery

from backend.config import Settings
from backend.mail.compose import Mail, RenderedMail, compose

log = logging.getLogger(__name__)

SEND_MAIL_TASK = "mail.send"
# The console backend keeps the newest mails here, for people in dev (GET /dev/mail) and tests.
SENT_MAIL_KEY = "litebase:mail:sent"
SENT_MAIL_KEEP = 1000


class SentMail(msgspec.Struct, frozen=True, kw_only=True):
    """A mail the console backend delivered, as kept in Redis for reading."""

    id: str
    kind: str
    to: str
    locale: str
    subject: str
    text: str
    html: str
    sent_at: datetime


class TransientMailError(Exception):
    """The SMTP server could not take the mail now (unreachable, timed out, a 4xx answer):
    the worker tries again later. Anything else (a 5xx answer, a bad template) is for good."""


class Mailer:
    """Hands mail to the workers; never blocks a request on SMTP or rendering."""

    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    async def send(self, mail: Mail) -> bool:
        """Queue ``mail``; False (and a log line) if the broker refused it."""
        try:
            await asyncio.to_thread(
                self._celery.send_task, SEND_MAIL_TASK, kwargs=msgspec.to_builtins(mail)
            )
        except Exception:
            log.exception("could not queue a %s mail to %s", mail.kind, mail.to)
            return False
        return True


def deliver(settings: Settings, mail: Mail, store: redis.Redis | None) -> None:
    """Render ``mail`` in its language and send it now, through the configured backend
    (called by the worker)."""
    rendered = compose(settings, mail)
    if settings.mail_backend == "console":
        _print_and_keep(rendered, store)
        return
    try:
        asyncio.run(_send_smtp(settings, rendered))
    except aiosmtplib.SMTPRecipientsRefused as exc:
        if all(400 <= refused.code < 500 for refused in exc.recipients):
            raise TransientMailError(str(exc)) from exc
        raise
    except aiosmtplib.SMTPResponseException as exc:
        if 400 <= exc.code < 500:
            raise TransientMailError(f"{exc.code} {exc.message}") from exc
        raise
    except OSError as exc:
        # Refused, timed out or dropped connections (aiosmtplib's are OSErrors too): the
        # server may be back later.
        raise TransientMailError(str(exc)) from exc


def _print_and_keep(mail: RenderedMail, store: redis.Redis | None) -> None:
    log.info("mail to %s: %s\n%s", mail.to, mail.subject, mail.text)
    if store is None:
        return
    sent = SentMail(
        id=uuid.uuid4().hex,
        kind=mail.kind,
        to=mail.to,
        locale=mail.locale,
        subject=mail.subject,
        text=mail.text,
        html=mail.html,
        sent_at=datetime.now(UTC),
    )
    pipe = store.pipeline()
    pipe.lpush(SENT_MAIL_KEY, msgspec.json.encode(sent))
    pipe.ltrim(SENT_MAIL_KEY, 0, SENT_MAIL_KEEP - 1)
    pipe.execute()


def mime_message(settings: Settings, mail: RenderedMail) -> EmailMessage:
    """The mail as MIME: multipart/alternative, the text first, the HTML preferred."""
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    domain = parseaddr(settings.mail_from)[1].rpartition("@")[2] or None
    message["Message-ID"] = make_msgid(domain=domain)
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    message["Content-Language"] = mail.locale  # after the content, which resets Content-*
    return message


async def _send_smtp(settings: Settings, mail: RenderedMail) -> None:
    context = None
    if settings.smtp_security != "none":
        # The system's CAs, or SMTP_CA_FILE's (a relay with a private CA).
        context = ssl.create_default_context(cafile=settings.smtp_ca_file or None)
    await aiosmtplib.send(
        mime_message(settings, mail),
        hostname=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username or None,
        password=settings.smtp_password or None,
        use_tls=settings.smtp_security == "tls",
        start_tls=settings.smtp_security == "starttls",
        tls_context=context,
        timeout=settings.smtp_timeout_seconds,
    )
