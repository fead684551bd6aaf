"""Passkeys in a real browser: Debian's Chromium, driven by Playwright, with a virtual
authenticator (the DevTools WebAuthn domain: a platform authenticator that keeps discoverable
credentials and verifies its user). A page on http://localhost (a secure context, and the
relying party id passkeys default to outside prod) uses the built JS client against `litebase
api` on another origin: register a passkey, sign in with it alone, complete two-factor sign-in
with it, and remove it."""

from __future__ import annotations

import time
from pathlib import Path

import pyotp
import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.conftest import Stack, restartable_api
from tests.e2e.test_js_browser import CHROMIUM, INSTALL, site  # noqa: F401 - site: a fixture

PASSWORD = "correct horse battery staple"
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>passkeys</title>
<script type="module">
  import * as litebase from "./client.js";
  window.litebase = litebase;
  window.lb = litebase.createClient("{api}");
  // What the test asks of the page, written as an app would.
  window.refusal = async (work) => {
    try {
      await work();
      return null;
    } catch (error) {
      const { name, status, code, methods, mfaToken } = error;
      return { name, status, code, methods, mfaToken };
    }
  };
  document.title = "ready";
</script>
"""


def test_passkeys_in_chromium(stack: Stack, site, tmp_path: Path) -> None:  # noqa: F811
    if CHROMIUM is None:
        pytest.fail(f"Chromium is missing (the browser tests need it): {INSTALL}")
    origin = f"http://localhost:{site.server_address[1]}"
    with (
        restartable_api(stack, {"CORS_ORIGINS": origin}, stack.log_dir / "passkeys-api.log") as api,
        sync_playwright() as playwright,
    ):
        (tmp_path / "index.html").write_text(PAGE.replace("{api}", api.base_url))
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            # localhost is the page's host; the static server listens on IPv4 loopback.
            args=["--no-sandbox", "--host-resolver-rules=MAP localhost 127.0.0.1"],
        )
        page = browser.new_context().new_page()
        page.goto(f"{origin}/index.html")
        page.wait_for_function("document.title === 'ready'")
        devtools = page.context.new_cdp_session(page)
        devtools.send("WebAuthn.enable")
        authenticator = devtools.send(
            "WebAuthn.addVirtualAuthenticator",
            {
                "options": {
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": True,
                    "hasUserVerification": True,
                    "isUserVerified": True,
                    "automaticPresenceSimulation": True,
                }
            },
        )["authenticatorId"]

        # Register: the authenticator now holds a discoverable credential for localhost.
        email = f"passkey-{time.monotonic_ns()}@example.com"
        user = page.evaluate(
            "async ([e, p]) => (await lb.auth.signUp(e, p)).user", [email, PASSWORD]
        )
        made = page.evaluate("async () => await lb.auth.registerPasskey('This browser')")
        assert made["name"] == "This browser" and "internal" in made["transports"], made
        held = devtools.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
        (credential,) = held["credentials"]
        assert credential["isResidentCredential"] and credential["rpId"] == "localhost"

        # Sign in with the passkey alone: no email, no password.
        page.evaluate("async () => await lb.auth.signOut()")
        assert page.evaluate("lb.auth.user") is None
        signed_in = page.evaluate("async () => (await lb.auth.signInWithPasskey()).user")
        assert signed_in["id"] == user["id"]
        uses = devtools.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})
        assert uses["credentials"][0]["signCount"] > credential["signCount"]

        # With two-factor sign-in on, the passkey is the second step after the password.
        secret = page.evaluate("async (p) => (await lb.auth.setupTotp(p)).secret", PASSWORD)
        page.evaluate("async (c) => await lb.auth.enableTotp(c)", pyotp.TOTP(secret).now())
        page.evaluate("async () => await lb.auth.signOut()")
        step = page.evaluate(
            "async ([e, p]) => refusal(() => lb.auth.signInWithPassword(e, p))", [email, PASSWORD]
        )
        assert step["name"] == "MfaRequiredError" and step["methods"] == ["totp", "passkey"], step
        second = page.evaluate(
            "async (token) => (await lb.auth.verifyPasskey(token)).user", step["mfaToken"]
        )
        assert second["id"] == user["id"]

        # Remove it: the authenticator still has it, the server no longer takes it.
        listed = page.evaluate("async () => (await lb.auth.listPasskeys()).items")
        assert [p["id"] for p in listed] == [made["id"]]
        assert listed[0]["last_used_at"] is not None
        page.evaluate("async (id) => await lb.auth.removePasskey(id)", made["id"])
        assert page.evaluate("async () => (await lb.auth.listPasskeys()).items") == []
        page.evaluate("async () => await lb.auth.signOut()")
        refused = page.evaluate("async () => refusal(() => lb.auth.signInWithPasskey())")
        assert (refused["status"], refused["code"]) == (401, "invalid_credentials"), refused
        browser.close()
