"""mail.send: deliver one mail through the configured backend, retrying transient failures."""

from __future__ import annotations

import smtplib
from typing import Any

from celery import shared_task

from backend.mail.service import SEND_MAIL_TASK, MailMessage, deliver
from workers.celery_app import LitebaseCelery


@shared_task(
    name=SEND_MAIL_TASK,
    bind=True,
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=8,
)
def send_mail(self: Any, to: str, subject: str, text: str) -> None:
    app = self.app
    assert isinstance(app, LitebaseCelery)
    deliver(app.settings, MailMessage(to=to, subject=subject, text=text), app.redis())
