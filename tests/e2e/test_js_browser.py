"""The built JS client in a real browser: Debian's Chromium, driven by Playwright, loads a small
page from another origin than the API's (so CORS is real) and signs up, stays signed in across a
reload, refreshes in two tabs at once with one request, uploads a file with progress and shows a
protected picture through a file token, sees a record made in the other tab, and resumes its
socket after the API process restarts."""

from __future__ import annotations

import base64
import functools
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Request, sync_playwright

from tests.e2e.conftest import Stack, restartable_api
from tests.e2e.test_js_client import built_client
from tests.files_support import png

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
INSTALL = "apt-get install -y chromium"
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>litebase client</title>
<script type="module">
  import * as litebase from "./client.js";
  // Every frame the page sends on a socket, to see what the client does.
  window.sentFrames = [];
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (data) {
    sentFrames.push(JSON.parse(data));
    return send.call(this, data);
  };
  window.litebase = litebase;
  window.lb = litebase.createClient("{api}");
  window.received = [];
  // What the test asks of the page, written as an app would.
  window.probeCors = async () => {
    const note = await lb.collection("notes").create({ title: "cors" });
    const bearer = { authorization: `Bearer ${lb.auth.session.access_token}` };
    const read = await fetch(`${lb.url}/collections/notes/records/${note.id}`, { headers: bearer });
    const signIn = await fetch(`${lb.url}/auth/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ grant_type: "password", email: "no@example.com", password: "12345" }),
    });
    return {
      etag: read.headers.get("etag"),
      computed: litebase.etagOf(note),
      requestId: read.headers.get("x-request-id"),
      rateLimit: signIn.headers.get("ratelimit-remaining"),
    };
  };
  window.refreshAt = (at) => {
    setTimeout(async () => {
      window.refreshed = (await lb.auth.refreshSession()).refresh_token;
    }, at - Date.now());
    return at - Date.now();
  };
  window.watchNotes = async () => {
    await lb.collection("notes").subscribe((event) => received.push(event)).ready;
  };
  window.createNote = async (title) => (await lb.collection("notes").create({ title })).id;
  // A file sent with progress (XMLHttpRequest here), then shown by <img> through a file token.
  window.uploadAndShow = async (pngBase64, size) => {
    const notes = lb.collection("notes");
    const big = new Uint8Array(size);
    big.set(new TextEncoder().encode("%PDF-1.4\\n"));
    const progress = [];
    const files = { attachments: new File([big], "big.pdf") };
    const onProgress = (n, total) => progress.push([n, total]);
    const sent = await notes.create({ title: "upload" }, { files, onProgress });
    const png = Uint8Array.from(atob(pngBase64), (c) => c.charCodeAt(0));
    const picture = { attachments: new File([png], "p.png") };
    const pictured = await notes.create({ title: "picture" }, { files: picture });
    const image = new Image();
    image.src = await lb.files.url("notes", pictured, pictured.attachments[0]);
    await image.decode();
    const bare = new Image();
    bare.src = notes.fileUrl(pictured, pictured.attachments[0]);
    const refused = await bare.decode().then(() => false, () => true);
    return { progress, names: sent.attachments, width: image.naturalWidth, refused };
  };
  document.title = "ready";
</script>
"""


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def site(tmp_path: Path) -> Iterator[ThreadingHTTPServer]:
    """A static server for the page, on its own port: another origin than the API's."""
    shutil.copy(built_client() / "index.js", tmp_path / "client.js")
    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def until(page: Page, script: str, timeout: float = 20) -> Any:
    """Poll a script in the page until it answers something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(script)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {script}"
        time.sleep(0.05)


def test_the_client_in_chromium(stack: Stack, site: ThreadingHTTPServer, tmp_path: Path) -> None:
    if CHROMIUM is None:
        pytest.fail(f"Chromium is missing (the browser tests need it): {INSTALL}")
    origin = f"http://127.0.0.1:{site.server_address[1]}"
    with (
        restartable_api(stack, {"CORS_ORIGINS": origin}, stack.log_dir / "browser-api.log") as api,
        sync_playwright() as playwright,
    ):
        (tmp_path / "index.html").write_text(PAGE.replace("{api}", api.base_url))
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context()
        refreshes: list[str] = []

        uploads: list[str] = []  # how each multipart body left the page: "xhr" or "fetch"

        def count_refreshes(request: Request) -> None:
            if request.url.endswith("/auth/token") and "refresh_token" in (request.post_data or ""):
                refreshes.append(request.url)
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                uploads.append(request.resource_type)

        context.on("request", count_refreshes)
        first, second = context.new_page(), context.new_page()
        for page in (first, second):
            page.goto(f"{origin}/index.html")
            page.wait_for_function("document.title === 'ready'")

        # Sign up in one tab; the other tab hears it; a reload is still signed in.
        email = f"browser-{time.monotonic_ns()}@example.com"
        user = first.evaluate(
            "async (email) => (await lb.auth.signUp(email, 'correct horse battery staple')).user",
            email,
        )
        until(second, "lb.auth.user !== null")
        first.reload()
        first.wait_for_function("document.title === 'ready'")
        assert first.evaluate("lb.auth.user.email") == email
        assert first.evaluate("async () => (await lb.auth.getUser()).id") == user["id"]

        # CORS: a script on this origin reads the headers the API exposes.
        exposed = first.evaluate("probeCors()")
        assert exposed["etag"] and exposed["etag"] == exposed["computed"], exposed
        assert exposed["requestId"], exposed
        assert exposed["rateLimit"] is not None, exposed
        preflight = httpx.options(
            f"{api.base_url}/collections/notes/records",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "PATCH",
                "Access-Control-Request-Headers": "authorization,content-type,if-match",
            },
        )
        assert preflight.status_code in (200, 204), preflight.text
        assert preflight.headers["access-control-max-age"] == "600"

        # Files: an upload's progress from XMLHttpRequest, and a protected picture in <img>
        # through a file token (without one, the same URL is refused).
        size = 3 * 1024 * 1024
        shown = first.evaluate(
            "([png, size]) => uploadAndShow(png, size)",
            [base64.b64encode(png(4, 3)).decode(), size],
        )
        assert len(shown["names"]) == 1, shown
        sent, total = shown["progress"][-1]
        assert sent == total and total > size, shown["progress"]
        assert shown["width"] == 4 and shown["refused"] is True, shown
        # With onProgress the upload went through XMLHttpRequest; without, through fetch.
        assert uploads == ["xhr", "fetch"], uploads

        # Two tabs refreshing at the same moment: one request, one session, the same tokens.
        # Rounds, because the tab that waits can hear of the other's result in either order
        # (the lock comes free before or after the message and localStorage reach it).
        for _ in range(3):
            refreshes.clear()
            for page in (first, second):
                page.evaluate("window.refreshed = null")
            at = first.evaluate("Date.now() + 1000")
            ahead = [page.evaluate("(at) => refreshAt(at)", at) for page in (first, second)]
            # The premise: both tabs were told before the moment came (a tab told later refreshes
            # after the other finished, with what it has, and the server's grace answers it).
            assert min(ahead) > 0, ahead
            tokens = {until(page, "window.refreshed") for page in (first, second)}
            assert len(tokens) == 1
            assert len(refreshes) == 1, refreshes
        sessions = first.evaluate("async () => (await lb.auth.listSessions()).items.length")
        assert sessions == 1

        # A record made in one tab arrives in the other.
        second.evaluate("watchNotes()")
        made = first.evaluate("createNote('hello tab')")
        until(second, f"received.some((e) => e.record.id === '{made}')")

        # The API process dies and starts again; a change made meanwhile arrives once the
        # socket is back.
        api.kill()
        until(second, "lb.realtime.state === 'reconnecting'")
        token = second.evaluate("lb.auth.session.access_token")
        meanwhile = httpx.post(
            f"{stack.base_url}/collections/notes/records",
            json={"title": "while down"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()["id"]
        api.start()
        # What the network coming back does: reconnect now, not at the next backoff.
        second.evaluate("window.dispatchEvent(new Event('online'))")
        until(second, f"received.some((e) => e.record.id === '{meanwhile}')")
        ids = second.evaluate("received.map((e) => e.event_id)")
        assert len(set(ids)) == len(ids)

        # A tab shown again checks that its socket is alive: it pings.
        second.evaluate("sentFrames.length = 0")
        second.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
        until(second, "sentFrames.some((f) => f.type === 'ping')")
        assert second.evaluate("lb.realtime.state") == "open"
        browser.close()
