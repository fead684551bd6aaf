"""mail.send: render one mail in its recipient's language and deliver it through the
configured backend, retrying what may pass later (the SMTP server down, a 4xx answer)."""

from __future__ import annotations

from typing import Any

import msgspec
from celery import shared_task

from backend.mail.compose import Mail
from backend.mail.service import SEND_MAIL_TASK, TransientMailError, deliver
from workers.celery_app import LitebaseCelery


@shared_task(
    name=SEND_MAIL_TASK,
    bind=True,
    autoretry_for=(TransientMailError,),
    retry_backoff=True,
    retry_backoff_max=600,
    max_retries=8,
)
def send_mail(
    self: Any, kind: str, to: str, locale: str | None = None, values: dict[str, Any] | None = None
) -> None:
    app = self.app
    assert isinstance(app, LitebaseCelery)
    mail = msgspec.convert({"kind": kind, "to": to, "locale": locale, "values": values or {}}, Mail)
    deliver(app.settings, mail, app.redis())
