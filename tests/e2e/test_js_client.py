"""The TypeScript client (clients/js) against the real stack: its Node suite runs with
`node --test`, talking to a `litebase api` it may stop and start again, and to a small control
server here for what only the test harness can do (read the mail, restart the API)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import msgspec
import pytest
import redis

from backend.mail.service import SENT_MAIL_KEY
from tests.e2e.conftest import ROOT, RestartableApi, Stack, restartable_api, run_python
from tests.oidc import oidc_provider
from tests.support import answer_json

JS = ROOT / "clients" / "js"
NODE_MISSING = "Node 20+ is needed for the JS client's tests: apt-get install -y nodejs npm"


def built_client() -> Path:
    """clients/js/dist, built (`make test` builds it first; a plain pytest run builds it here)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail(NODE_MISSING)
    if not (JS / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, check=True)
    if not (JS / "dist" / "index.js").is_file():
        subprocess.run(["npm", "run", "build"], cwd=JS, check=True)
    return JS / "dist"


class Control(ThreadingHTTPServer):
    """What a Node test asks of the harness: the newest mail to an address, the API stopped
    (SIGTERM), killed (SIGKILL) or started again."""

    def __init__(self, api: RestartableApi, redis_url: str) -> None:
        super().__init__(("127.0.0.1", 0), ControlHandler)
        self.api = api
        self.mail = redis.Redis.from_url(redis_url)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_for_mail(self, to: str, subject: str, timeout: float = 30) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for raw in self.mail.lrange(SENT_MAIL_KEY, 0, -1):
                mail: dict[str, Any] = msgspec.json.decode(raw)
                if mail["to"] == to and subject in mail["subject"]:
                    return mail
            time.sleep(0.1)
        return None


class ControlHandler(BaseHTTPRequestHandler):
    server: Control

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path == "/mail":
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            mail = self.server.wait_for_mail(query["to"], query["subject"])
            answer_json(self, 200 if mail else 404, mail)
        else:
            answer_json(self, 404, None)

    def do_POST(self) -> None:
        if self.path == "/api/stop":
            self.server.api.stop()
        elif self.path == "/api/kill":
            self.server.api.kill()
        elif self.path == "/api/start":
            self.server.api.start()
        else:
            return answer_json(self, 404, None)
        answer_json(self, 200, {"ok": True})


@pytest.fixture
def oidc_issuer() -> Iterator[str]:
    """An OpenID provider on loopback, which the Node suite's API signs people in with."""
    with oidc_provider() as issuer:
        yield issuer


@pytest.fixture
def control(stack: Stack, oidc_issuer: str) -> Iterator[tuple[RestartableApi, Control]]:
    oauth = {
        "OAUTH_PROVIDERS": "mock",
        "OAUTH_MOCK_CLIENT_ID": "litebase-js",
        "OAUTH_MOCK_CLIENT_SECRET": "js-secret",
        "OAUTH_MOCK_ISSUER": oidc_issuer,
        "AUTH_REDIRECT_URLS": "https://app.example.com/*",
        "RATE_LIMIT_OAUTH_PER_MINUTE": "10000",
    }
    with restartable_api(stack, oauth, stack.log_dir / "js-api.log") as api:
        server = Control(api, stack.redis_url)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield api, server
        finally:
            server.shutdown()
            server.server_close()


def test_the_node_suite_passes_against_the_stack(
    stack: Stack, control: tuple[RestartableApi, Control], oidc_issuer: str
) -> None:
    built_client()
    api, server = control
    env = {
        **os.environ,
        "LITEBASE_URL": api.base_url,
        "LITEBASE_STABLE_URL": stack.base_url,
        "LITEBASE_CONTROL_URL": server.url,
        "LITEBASE_OIDC_URL": oidc_issuer,
    }
    # JS_TESTS narrows the run to some files (test/realtime.test.mjs) while working on them.
    files = os.environ.get("JS_TESTS", "test/").split()
    result = subprocess.run(
        ["node", "--experimental-websocket", "--test", "--test-concurrency=1", *files],
        cwd=JS,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,  # under pytest-timeout's 120 s, so a hang shows the suite's output
        check=False,
    )
    report = result.stdout[-12000:] + result.stderr[-4000:]
    assert result.returncode == 0, report


def _tsc(folder: Path, entry: str) -> subprocess.CompletedProcess[str]:
    """Type-check one file of the folder, strict, with @litebase/client as published (dist)."""
    config = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "target": "ES2022",
            "module": "ESNext",
            "moduleResolution": "bundler",
            "lib": ["ES2022", "DOM"],
            "types": [],
            "skipLibCheck": True,
            "paths": {"@litebase/client": [str(JS / "dist" / "index.d.ts")]},
        },
        "files": [entry],
    }
    (folder / "tsconfig.json").write_text(json.dumps(config))
    tsc = JS / "node_modules" / ".bin" / "tsc"
    return subprocess.run(
        [str(tsc), "-p", str(folder / "tsconfig.json"), "--pretty", "false"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_generated_types_make_the_client_typed(tmp_path: Path) -> None:
    """`litebase gen types --lang ts` writes the Database type: a small app compiles against it,
    and one with a mistake on each marked line fails on exactly those lines."""
    built_client()
    generated = run_python(
        "backend.cli", "gen", "types", "--lang", "ts", "--out", str(tmp_path / "database.ts"),
        env=dict(os.environ),
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    for name in ("app.ts", "wrong.ts"):
        shutil.copy(JS / "test" / "typed" / name, tmp_path / name)
    good = _tsc(tmp_path, "app.ts")
    assert good.returncode == 0, good.stdout + good.stderr
    bad = _tsc(tmp_path, "wrong.ts")
    lines = (tmp_path / "wrong.ts").read_text().splitlines()
    marked = {n for n, line in enumerate(lines, 1) if line.endswith("// wrong")}
    failing = {int(m) for m in re.findall(r"wrong\.ts\((\d+),\d+\): error", bad.stdout)}
    assert bad.returncode != 0
    assert failing == marked, bad.stdout


def test_generated_python_types_type_the_python_client(tmp_path: Path) -> None:
    """`litebase gen types --lang py` writes TypedDicts that mypy holds a caller to."""
    module = tmp_path / "litebase_types.py"
    generated = run_python(
        "backend.cli", "gen", "types", "--lang", "py", "--out", str(module), env=dict(os.environ)
    )
    assert generated.returncode == 0, generated.stderr
    (tmp_path / "app.py").write_text(
        "from litebase_types import NotesInsert, TasksRow\n"
        "good: NotesInsert = {'title': 'hi', 'tags': ['a']}\n"
        "typo: NotesInsert = {'titel': 'hi'}  # wrong\n"
        "def status(task: TasksRow) -> str:\n"
        "    return task['status']\n"
        "def wrong(task: TasksRow) -> int:\n"
        "    return task['status']  # wrong\n"
    )
    checked = run_python(
        *("mypy", "--strict", "--cache-dir", str(ROOT / ".mypy_cache"), "app.py"),
        env=dict(os.environ),
        cwd=tmp_path,
    )
    failing = {int(m) for m in re.findall(r"^app\.py:(\d+): error", checked.stdout, re.M)}
    assert failing == {3, 7}, checked.stdout
