"""GET /dev/mail: in dev, the mail the console backend delivered, listed and shown as HTML to
the developer's own machine; outside dev the routes do not exist."""

from __future__ import annotations

import httpx
import msgspec
import pytest
import redis
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.config import settings_from_env
from backend.mail.compose import Mail, MailKind
from backend.mail.service import SENT_MAIL_KEY, SentMail, deliver


def _deliver_one(settings) -> SentMail:
    mail = Mail(
        kind=MailKind.SIGN_IN_CODE,
        to="ada@example.com",
        locale="de",
        values={"code": "123456", "minutes": 10},
    )
    with redis.Redis.from_url(settings.redis_url) as store:
        deliver(settings, mail, store)
        return msgspec.json.decode(store.lindex(SENT_MAIL_KEY, 0), type=SentMail)


async def test_in_dev_the_sent_mail_is_listed_and_shown(settings):
    dev = msgspec.structs.replace(settings, env="dev")
    sent = _deliver_one(dev)
    app = create_app(dev)
    # As from a browser on the same machine.
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        listed = await client.get("/dev/mail")
        assert listed.status_code == 200
        assert listed.headers["content-type"].startswith("text/html")
        assert f"href='/dev/mail/{sent.id}'" in listed.text
        assert "Dein Anmeldecode: 123456" in listed.text
        shown = await client.get(f"/dev/mail/{sent.id}")
        assert shown.status_code == 200
        assert shown.text == sent.html and ">123456</span>" in shown.text
        assert "default-src 'none'" in shown.headers["content-security-policy"]
        text = await client.get(f"/dev/mail/{sent.id}/text")
        assert text.headers["content-type"].startswith("text/plain")
        assert text.text.startswith("To: ada@example.com\nSubject: Dein Anmeldecode: 123456\n")
        missing = await client.get("/dev/mail/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")


async def test_in_dev_only_the_machine_itself_reads_the_mail(settings):
    dev = msgspec.structs.replace(settings, env="dev")
    transport = httpx.ASGITransport(app=create_app(dev), client=("192.168.1.20", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://dev.local") as client:
        assert (await client.get("/dev/mail")).status_code == 403


@pytest.mark.parametrize("env", ["test", "prod"])
async def test_outside_dev_the_route_does_not_exist(settings, env):
    config = settings
    if env == "prod":
        config = settings_from_env(
            {
                "LITEBASE_ENV": "prod",
                "SECRET_KEY": "k" * 48,
                "EMBEDDING_PROVIDER": "openai",
                "APP_URL": "https://app.example.com",
                "MAIL_ALLOW_CONSOLE_IN_PROD": "true",
            },
            database_url=settings.database_url,
            redis_url=settings.redis_url,
            relay_enabled=False,
        )
    _deliver_one(config)
    async with AsyncTestClient(create_app(config)) as client:
        for path in ("/dev/mail", "/dev/mail/anything", "/dev/mail/anything/text"):
            assert (await client.get(path)).status_code == 404, path
        paths = (await client.get("/schema/openapi.json")).json()["paths"]
        assert not [path for path in paths if path.startswith("/dev")]
