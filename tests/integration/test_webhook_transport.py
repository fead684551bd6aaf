"""The pinned connection over real TLS: the worker connects to the address it checked, yet the
receiver sees the URL's name in SNI and Host, and the certificate is verified for that name."""

from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.webhooks.delivery import post_signed
from backend.webhooks.targets import TargetPolicy

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[dict[str, Any]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(  # a certificate for hooks.test only
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.test",
         "-addext", "subjectAltName=DNS:hooks.test"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    seen: dict[str, Any] = {"sni": [], "host": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", "0")))
            seen["host"].append(self.headers.get("host"))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: seen["sni"].append(name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"port": server.server_address[1], "seen": seen, "trust": cert}
    finally:
        server.shutdown()
        server.server_close()


def _hooks_test_is_loopback(host: str, port: int) -> list[str]:
    return ["127.0.0.1"]


def test_sni_host_and_certificate_use_the_name_not_the_pinned_address(tls_receiver):
    trust = ssl.create_default_context(cafile=str(tls_receiver["trust"]))
    port = tls_receiver["port"]
    sent = post_signed(
        f"https://hooks.test:{port}/in",
        b"{}",
        {},
        TargetPolicy(allow_private=True),
        5.0,
        _hooks_test_is_loopback,
        verify=trust,
    )
    assert (sent.outcome, sent.status_code, sent.error) == ("succeeded", 204, None)
    assert tls_receiver["seen"]["sni"] == ["hooks.test"]
    assert tls_receiver["seen"]["host"] == [f"hooks.test:{port}"]
    # The same address under another name: the certificate does not name it, so no delivery.
    other = post_signed(
        f"https://other.test:{port}/in",
        b"{}",
        {},
        TargetPolicy(allow_private=True),
        5.0,
        _hooks_test_is_loopback,
        verify=trust,
    )
    assert other.outcome == "retry" and "certificate" in (other.error or "").lower()
    assert tls_receiver["seen"]["host"] == [f"hooks.test:{port}"]
