"""The Python client against the real server: auth, collections, and realtime that comes back."""

from __future__ import annotations

import asyncio
import io
import time
import uuid

import httpx
import pyotp
import pytest
from litebase_client import ApiError, Litebase, RealtimeError

from tests.e2e.conftest import api_beside, mailed_token
from tests.oidc import APP, APP_RETURN, oidc_provider, provider_user, query_of, through_provider
from tests.waiting import eventually

PASSWORD = "correct horse battery staple"


@pytest.fixture
async def lb(stack):
    async with Litebase(stack.base_url) as client:
        await client.sign_up(f"client-{uuid.uuid4().hex[:8]}@example.com", PASSWORD)
        yield client


async def test_collections_round_trip(lb):
    notes = lb.collection("notes")
    created = await notes.create({"title": "from the client", "tags": ["py"]})
    assert (await notes.get(created["id"]))["title"] == "from the client"
    await notes.update(created["id"], {"public": True})
    for i in range(3):
        await notes.create({"title": f"more {i}"})
    everything = await notes.all(limit=2, sort="-created_at", filter="owner = @auth.id")
    assert len(everything) == 4
    with pytest.raises(ApiError) as refused:
        await notes.create({"title": 5})
    assert refused.value.status == 422
    assert refused.value.problem["errors"][0]["field"] == "title"
    await notes.delete(created["id"])


async def test_files_go_up_with_progress_and_come_back(lb, tmp_path):
    from tests.files_support import PDF, png

    report = tmp_path / "Report One.pdf"
    report.write_bytes(PDF + b"%" * 200_000)
    notes = lb.collection("notes")
    progress: list[tuple[int, int]] = []
    note = await notes.create(
        {"title": "with files"},
        files={"attachments": [report, ("chart.png", png())]},
        on_progress=lambda sent, total: progress.append((sent, total)),
    )
    first, chart = note["attachments"]
    assert first.startswith("Report_One_") and chart.startswith("chart_")
    total = report.stat().st_size + len(png())
    assert progress[-1] == (total, total) and len(progress) > 2  # as the body went
    assert await notes.download(note["id"], first) == report.read_bytes()

    kept = await notes.update(
        note["id"], {"attachments": [chart]}, files={"attachments": ("more.pdf", PDF)}
    )
    assert kept["attachments"][0] == chart and kept["attachments"][1].startswith("more_")

    # A URL for a page: plain, the protected file is refused; with a file token, it opens.
    plain = notes.file_url(note["id"], chart)
    assert plain == f"{lb.base_url}/files/notes/{note['id']}/{chart}"
    async with httpx.AsyncClient() as browser:
        assert (await browser.get(plain)).status_code == 404
        token = await lb.file_token(collection="notes", record=note["id"])
        opened = await browser.get(notes.file_url(note["id"], chart, token=token))
        assert opened.status_code == 200 and opened.content == png()
        thumb = await browser.get(notes.file_url(note["id"], chart, token=token, thumb="100x100"))
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    with pytest.raises(ApiError) as refused:
        await notes.create({"title": "x"}, files={"attachments": ("x.pdf", b"<html></html>")})
    assert refused.value.status == 415


async def test_a_pdf_uploaded_from_the_client_shows_its_thumbnail_and_is_found_on_page_3(lb):
    """Issue 22's promise, end to end through the client: upload a PDF to a note, see its
    thumbnail, search a sentence from page 3 and get the note with page 3."""
    from PIL import Image

    from tests.files_support import pdf

    marker = f"k{uuid.uuid4().hex[:10]}"
    sentence = f"The harbour master {marker} logged nine tankers at dawn."
    notes = lb.collection("notes")
    note = await notes.create(
        {"title": "harbour log"},
        files={"attachments": [("Log.pdf", pdf(["Cover page.", "Contents.", sentence]))]},
    )
    (name,) = note["attachments"]
    token = await lb.file_token(collection="notes", record=note["id"])
    async with httpx.AsyncClient() as browser:
        thumb = await browser.get(notes.file_url(note["id"], name, token=token, thumb="100x100"))
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(thumb.content)).size == (100, 100)  # its first page, drawn

    async def on_page_3() -> list[dict]:
        hits = await notes.search(f"harbour master {marker}", mode="text", k=5)
        return [hit for hit in hits if hit["record"]["id"] == note["id"]]

    (hit,) = await eventually(on_page_3, what="the sentence of page 3 found")
    assert (hit["file"], hit["page"]) == (name, 3) and marker in hit["chunk"]["content"]


async def test_a_big_file_goes_up_resumably_in_pieces(lb, tmp_path):
    from tests.files_support import PDF

    big = tmp_path / "Big Scan.pdf"
    big.write_bytes(PDF + bytes(i % 251 for i in range(3_000_000)))
    notes = lb.collection("notes")
    note = await notes.create({"title": "resumable"})
    progress: list[tuple[int, int]] = []
    name = await notes.upload_resumable(
        note["id"], "attachments", big, chunk_bytes=1_000_000,
        on_progress=lambda sent, total: progress.append((sent, total)),
    )  # fmt: skip
    total = big.stat().st_size
    assert name.startswith("Big_Scan_") and progress[-1] == (total, total) and len(progress) == 4
    assert (await notes.get(note["id"]))["attachments"] == [name]
    assert await notes.download(note["id"], name) == big.read_bytes()
    with pytest.raises(ApiError) as refused:  # the field's type check holds
        (tmp_path / "page.pdf").write_bytes(b"<html></html>" * 1000)
        await notes.upload_resumable(note["id"], "attachments", tmp_path / "page.pdf")
    assert refused.value.status == 415


async def test_any_list_is_read_page_by_page(lb):
    keys = [
        (await lb._call("POST", "/auth/api-keys", json={"name": f"k{i}"}))["api_key"]["id"]
        for i in range(3)
    ]
    first = await lb.page("/auth/api-keys", limit=2)
    assert len(first["items"]) == 2 and first["next_cursor"] is not None
    assert [key["id"] async for key in lb.pages("/auth/api-keys", limit=2)] == keys
    notes = lb.collection("notes")
    for i in range(3):
        await notes.create({"title": f"paged {i}"})
    mine = [n["title"] async for n in notes.pages(limit=2, filter="owner = @auth.id", sort="title")]
    assert mine == ["paged 0", "paged 1", "paged 2"]


async def test_related_records_come_inline_with_expand(lb):
    await lb._call("POST", "/orgs", json={"name": "client org"})
    await lb.refresh()  # the new session acts in its first org
    project = await lb.collection("projects").create({"name": "launch"})
    tasks = lb.collection("tasks")
    task = await tasks.create({"project": project["id"], "title": "write the post"})
    one = await tasks.get(task["id"], expand="project")
    assert one["expand"]["project"]["name"] == "launch"
    page = await tasks.list(expand="project", filter="title = 'write the post'")
    assert [item["expand"]["project"]["id"] for item in page["items"]] == [project["id"]]


async def test_search_finds_records_once_embedded(lb):
    notes = lb.collection("notes")
    marker = uuid.uuid4().hex[:8]
    created = await notes.create({"title": "client search", "body": f"persimmon {marker}"})
    items = await eventually(
        lambda: notes.search(marker, mode="text", k=3), every=0.2, what="the note embedded"
    )
    assert [item["record"]["id"] for item in items] == [created["id"]]
    assert marker in items[0]["chunk"]["content"]
    with pytest.raises(ApiError) as refused:
        await notes.search(marker, k=0)
    assert refused.value.problem["errors"][0]["field"] == "k"


async def test_sign_in_with_a_mailed_code_then_delete_the_account(stack, inbox):
    email = f"client-otp-{uuid.uuid4().hex[:8]}@example.com"
    async with Litebase(stack.base_url) as first, Litebase(stack.base_url) as second:
        await first.sign_up(email, PASSWORD)
        await second.send_sign_in_code(email)
        mail = await asyncio.to_thread(inbox, email, "sign-in code")
        code = mail["subject"].rsplit(" ", 1)[-1]
        await second.sign_in_with_code(email, code)
        assert (await second.me())["email"] == email
        await second.delete_account(PASSWORD)
        with pytest.raises(ApiError) as gone:
            await first.me()  # its session ended with the account
        assert gone.value.status == 401


async def test_the_language_of_my_mails_is_given_at_sign_up(stack, inbox):
    email = f"client-locale-{uuid.uuid4().hex[:8]}@example.com"
    async with Litebase(stack.base_url) as lb:
        signed = await lb.sign_up(email, PASSWORD, locale="de")
        assert signed["user"]["locale"] == "de"
        assert (await lb.me())["locale"] == "de"
    mail = await asyncio.to_thread(inbox, email, "Bestätige deine E-Mail-Adresse")
    assert mail["locale"] == "de"


async def test_two_factor_sign_in_through_the_client(stack):
    email = f"client-mfa-{uuid.uuid4().hex[:8]}@example.com"
    async with Litebase(stack.base_url) as lb:
        await lb.sign_up(email, PASSWORD)
        setup = await lb._call("POST", "/auth/mfa/totp", json={"password": PASSWORD})
        app = pyotp.TOTP(setup["secret"])
        # Enabled with the previous step's code (one step of drift is accepted), so the
        # current step's is still unused for the sign-in below.
        # (Twice at most: a step boundary may pass between making the code and checking it.)
        for attempt in range(2):
            try:
                previous = app.at(time.time() - 30)
                await lb._call("POST", "/auth/mfa/totp/enable", json={"code": previous})
                break
            except ApiError:
                if attempt:
                    raise
        with pytest.raises(ApiError) as asked:
            await lb.sign_in(email, PASSWORD)
        assert (asked.value.status, asked.value.problem["code"]) == (401, "mfa_required")
        tokens = await lb.sign_in_with_totp(asked.value.problem["mfa_token"], app.now())
        assert tokens["user"]["totp_enabled"] is True
        assert (await lb.me())["email"] == email


async def test_an_anonymous_user_keeps_its_note_once_it_keeps_the_account(stack, inbox):
    email = f"client-guest-{uuid.uuid4().hex[:8]}@example.com"
    async with Litebase(stack.base_url) as lb:
        guest = await lb.sign_in_anonymously()
        assert (guest["user"]["email"], guest["user"]["is_anonymous"]) == (None, True)
        note = await lb.collection("notes").create({"title": "made as a guest"})
        await lb.convert_account(email, PASSWORD)
        mail = await asyncio.to_thread(inbox, email, "Confirm your new email address")
        token = mailed_token(mail)
        user = await lb.confirm_email(token)
        assert (user["email"], user["is_anonymous"]) == (email, False)
        assert lb.user is not None and lb.user["is_anonymous"] is False  # refreshed
        assert (await lb.collection("notes").get(note["id"]))["title"] == "made as a guest"
    async with Litebase(stack.base_url) as again:
        assert (await again.sign_in(email, PASSWORD))["user"]["id"] == user["id"]


async def test_a_recovery_code_signs_in_through_the_client(stack, inbox):
    email = f"client-recovery-{uuid.uuid4().hex[:8]}@example.com"
    async with Litebase(stack.base_url) as lb:
        await lb.sign_up(email, PASSWORD)
        setup = await lb._call("POST", "/auth/mfa/totp", json={"password": PASSWORD})
        codes = (await lb.enable_totp(pyotp.TOTP(setup["secret"]).now()))["recovery_codes"]
        assert len(codes) == 10
        with pytest.raises(ApiError) as asked:
            await lb.sign_in(email, PASSWORD)
        await lb.sign_in_with_recovery_code(asked.value.problem["mfa_token"], codes[0])
        assert await lb.two_factor_status() == {"totp_enabled": True, "recovery_codes_left": 9}
        await asyncio.to_thread(inbox, email, "A recovery code was used")
        fresh = await lb.regenerate_recovery_codes(recovery_code=codes[1])
        assert len(fresh) == 10 and codes[2] not in fresh


async def test_tokens_refresh_themselves(lb):
    old = lb.refresh_token
    await lb.refresh()
    assert lb.refresh_token != old  # rotated
    assert (await lb.collection("notes").list(filter="owner = @auth.id"))["items"] == []


async def test_realtime_reconnects_and_misses_nothing(lb):
    notes = lb.collection("notes")
    states: list[str] = []
    async with lb.realtime(on_state=states.append, max_backoff=0.5) as live:
        await live.wait_open()
        subscription = await live.subscribe("collection:notes")
        await subscription.confirmed()
        first = await notes.create({"title": "before the drop"})
        assert (await subscription.next(10))["record"]["id"] == first["id"]

        live._ws.transport.abort()  # the network goes away
        written = [(await notes.create({"title": f"while away {i}"}))["id"] for i in range(5)]
        received = [(await subscription.next(20))["record"]["id"] for _ in range(5)]
        assert received == written
        with pytest.raises(TimeoutError):
            await subscription.next(1.0)  # and nothing twice
    assert states[:2] == ["connecting", "open"]
    assert "reconnecting" in states and states.count("open") >= 2


class Partition:
    """A TCP relay in front of the API that a test can cut off (open connections dropped, new
    ones closed at once, as a dead network does) and mend."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.is_cut = False
        self._open: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.is_cut:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._open |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._open -= {writer, up_writer}

    def cut(self) -> None:
        self.is_cut = True
        for writer in self._open:
            writer.transport.abort()

    def mend(self) -> None:
        self.is_cut = False

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_a_client_cut_off_for_ten_seconds_resumes_with_nothing_missing(stack):
    email = f"away-{uuid.uuid4().hex[:8]}@example.com"
    partition = Partition(int(stack.base_url.rsplit(":", 1)[1]))
    far_url = await partition.start()
    states: list[str] = []
    try:
        async with Litebase(stack.base_url) as near, Litebase(far_url) as far:
            await near.sign_up(email, PASSWORD)
            await far.sign_in(email, PASSWORD)
            notes = near.collection("notes")
            async with far.realtime(on_state=states.append, max_backoff=1.0) as live:
                await live.wait_open()
                subscription = await live.subscribe("collection:notes")
                await subscription.confirmed()
                first = await notes.create({"title": "before the partition"})
                assert (await subscription.next(10))["record"]["id"] == first["id"]

                partition.cut()
                written = []
                loop = asyncio.get_running_loop()
                until = loop.time() + 10
                while loop.time() < until:  # ten seconds of writes the client cannot see
                    written.append((await notes.create({"title": f"away {len(written)}"}))["id"])
                    await asyncio.sleep(0.5)
                assert states[-1] != "open"  # it noticed, and is still trying
                partition.mend()

                received = [(await subscription.next(30))["record"]["id"] for _ in written]
                assert received == written
                with pytest.raises(TimeoutError):
                    await subscription.next(1.0)  # and nothing twice
    finally:
        await partition.close()
    assert states.count("open") >= 2 and "reconnecting" in states
    assert len(written) >= 15


async def test_realtime_errors_reach_the_subscription(lb):
    async with lb.realtime() as live:
        await live.wait_open()
        subscription = await live.subscribe("collection:notes", filter="nope = 1")
        with pytest.raises(RealtimeError) as error:
            await subscription.next(10)
        assert error.value.code == "bad_filter"


async def test_sign_in_with_a_provider_and_link_one(stack):
    with (
        oidc_provider() as issuer,
        api_beside(
            stack,
            {
                "OAUTH_PROVIDERS": "mock",
                "OAUTH_MOCK_CLIENT_ID": "litebase-py",
                "OAUTH_MOCK_CLIENT_SECRET": "py-secret",
                "OAUTH_MOCK_ISSUER": issuer,
                "AUTH_REDIRECT_URLS": f"{APP}/*",
            },
            stack.log_dir / "py-oauth-api.log",
        ) as api,
    ):
        address = f"py-{uuid.uuid4().hex[:8]}@example.com"
        provider_user(issuer, "py-person", email=address, email_verified=True)
        async with Litebase(api.base_url) as lb:
            url, verifier = lb.oauth_authorize_url("mock", APP_RETURN)
            back = await asyncio.to_thread(through_provider, api.base_url, url, "py-person")
            signed = await lb.exchange_oauth_code(query_of(back)["code"], verifier)
            assert signed["user"]["email"] == address
            assert (await lb.me())["id"] == signed["user"]["id"]
            [identity] = await lb.identities()
            with pytest.raises(ApiError) as last:
                await lb.unlink_identity(identity["id"])
            assert last.value.status == 409
        provider_user(issuer, "py-other", email="other@example.com", email_verified=False)
        async with Litebase(api.base_url) as lb:
            await lb.sign_up(f"py-{uuid.uuid4().hex[:8]}@example.com", PASSWORD)
            url, verifier = await lb.link_identity_url("mock", APP_RETURN)
            back = await asyncio.to_thread(through_provider, api.base_url, url, "py-other")
            linked = await lb.exchange_oauth_code(query_of(back)["code"], verifier)
            assert linked["user"]["id"] == lb.user["id"]  # type: ignore[index]
            assert [i["provider"] for i in await lb.identities()] == ["mock"]
