"""GET /dev/mail: the mail the console backend delivered, readable in a browser while
developing. Mounted only with LITEBASE_ENV=dev (the routes do not exist otherwise) and
answering loopback callers only: the mails hold sign-in codes and tokens."""

from __future__ import annotations

import html
import ipaddress
from typing import Any

import msgspec
from litestar import Controller, Response, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.enums import MediaType
from litestar.handlers import BaseRouteHandler
from redis.asyncio import Redis

from backend.mail.service import SENT_MAIL_KEY, SentMail
from backend.problems import Problem, may_answer

# The mail's own HTML, shown as it is: no script runs, nothing is fetched but its images.
_MAIL_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:"


def loopback_only(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Only the developer's own machine reads the dev mail (`litebase dev --host 0.0.0.0`
    must not hand the LAN everyone's tokens)."""
    host = connection.client.host if connection.client else ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise Problem(403, "The dev mail is for the machine the server runs on", code="forbidden")


async def _sent(redis: Redis) -> list[SentMail]:
    raw = await redis.lrange(SENT_MAIL_KEY, 0, -1)
    return [msgspec.json.decode(item, type=SentMail) for item in raw]


async def _one(redis: Redis, mail_id: str) -> SentMail:
    for mail in await _sent(redis):
        if mail.id == mail_id:
            return mail
    raise Problem(404, "No such mail (the newest 1,000 are kept)", code="not_found")


_ROW = (
    "<tr><td>{when}</td><td>{to}</td><td><a href='/dev/mail/{id}'>{subject}</a></td>"
    "<td>{kind}</td><td>{locale}</td><td><a href='/dev/mail/{id}/text'>text</a></td></tr>"
)


def _escaped(mail: SentMail) -> dict[str, str]:
    return {
        "when": mail.sent_at.strftime("%Y-%m-%d %H:%M:%S"),
        **{
            name: html.escape(getattr(mail, name))
            for name in ("to", "id", "subject", "kind", "locale")
        },
    }


class DevMailController(Controller):
    """Who may call: loopback clients of a dev server (LITEBASE_ENV=dev) only."""

    path = "/dev/mail"
    tags = ["dev"]
    guards = [loopback_only]
    opt = may_answer(403)

    @get("/", summary="Dev only: the newest mails delivered", media_type=MediaType.HTML)
    async def list_mail(self, state: State) -> str:
        rows = "\n".join(_ROW.format(**_escaped(mail)) for mail in await _sent(state.redis))
        return (
            "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Dev mail</title></head>"
            "<body style='font-family: sans-serif'><h1>Mail sent (console backend)</h1>"
            "<table cellpadding='6'><tr><th>sent (UTC)</th><th>to</th><th>subject</th>"
            f"<th>kind</th><th>language</th><th></th></tr>{rows}</table></body></html>"
        )

    @get(
        "/{mail_id:str}",
        summary="Dev only: one mail's HTML, as a mail client shows it",
        media_type=MediaType.HTML,
        opt=may_answer(403, 404),
    )
    async def show_mail(self, mail_id: str, state: State) -> Response[str]:
        mail = await _one(state.redis, mail_id)
        return Response(mail.html, headers={"Content-Security-Policy": _MAIL_CSP})

    @get(
        "/{mail_id:str}/text",
        summary="Dev only: one mail's text part",
        media_type=MediaType.TEXT,
        opt=may_answer(403, 404),
    )
    async def show_mail_text(self, mail_id: str, state: State) -> str:
        mail = await _one(state.redis, mail_id)
        return f"To: {mail.to}\nSubject: {mail.subject}\n\n{mail.text}"
