"""Webhooks without I/O: signatures, secrets, the SSRF address checks, URLs, backoff, settings."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import time

import pytest

from backend.config import SettingsError, settings_from_env
from backend.webhooks.delivery import post_signed, retry_delay, retry_schedule
from backend.webhooks.service import normalized_events, wants
from backend.webhooks.signing import derive_secret, sign, signature_header
from backend.webhooks.targets import (
    RefusedTarget,
    TargetPolicy,
    check_addresses,
    parse_target,
    refusal,
)
from tests.support import PROD_ENV
from tests.webhook_receiver import verify

DEFAULT = TargetPolicy()


# --- signatures and secrets


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = b'{"event_id":1,"op":"insert"}'
    expected = hmac.new(b"whsec_abc", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("whsec_abc", 1700000000, body) == expected
    assert signature_header(["whsec_abc"], 1700000000, body) == f"t=1700000000,v1={expected}"


def test_during_an_overlap_both_secrets_sign_and_a_receiver_of_either_verifies():
    body, now = b"{}", int(time.time())
    header = signature_header(["whsec_new", "whsec_old"], now, body)
    assert header.count("v1=") == 2 and header.startswith(f"t={now},v1=")
    assert verify("whsec_new", header, body) and verify("whsec_old", header, body)
    assert not verify("whsec_other", header, body)


def test_the_receiver_check_refuses_tampering_and_stale_timestamps():
    body, now = b'{"a":1}', int(time.time())
    header = signature_header(["whsec_s"], now, body)
    assert verify("whsec_s", header, body)
    assert not verify("whsec_s", header, b'{"a":2}')
    assert not verify("whsec_s", header.replace(f"t={now}", f"t={now + 1}"), body)
    stale = signature_header(["whsec_s"], now - 301, body)
    assert not verify("whsec_s", stale, body)
    assert not verify("whsec_s", "", body)


def test_secrets_are_derived_from_the_server_key_and_a_salt():
    secret = derive_secret("k" * 40, "salt-1")
    assert secret.startswith("whsec_") and len(secret) > 40
    assert derive_secret("k" * 40, "salt-1") == secret
    assert derive_secret("k" * 40, "salt-2") != secret
    assert derive_secret("j" * 40, "salt-1") != secret


# --- addresses (SSRF)

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("169.254.169.254", "link-local"),
    ("fe80::1", "link-local"),
    ("224.0.0.1", "multicast"),
    ("ff02::1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("100.64.0.1", "not globally routable"),
    ("192.0.2.1", "private"),  # TEST-NET-1, documentation
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.0.0.1", "private"),
    ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 around 169.254.169.254
]


@pytest.mark.parametrize(("address", "why"), REFUSED)
def test_internal_addresses_are_refused_with_the_reason(address, why):
    reason = refusal(ipaddress.ip_address(address))
    assert reason is not None and why in reason
    with pytest.raises(RefusedTarget, match=why):
        check_addresses("hooks.example", [address], DEFAULT)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::"]
)
def test_public_addresses_pass(address):
    assert refusal(ipaddress.ip_address(address)) is None
    assert check_addresses("hooks.example", [address], DEFAULT) == [ipaddress.ip_address(address)]


def test_one_internal_address_among_public_ones_refuses_the_host():
    with pytest.raises(RefusedTarget, match=r"127\.0\.0\.1 is loopback"):
        check_addresses("rebind.example", ["8.8.8.8", "127.0.0.1"], DEFAULT)
    with pytest.raises(RefusedTarget, match="no address"):
        check_addresses("nothing.example", [], DEFAULT)


def test_allow_private_and_allowed_networks_let_chosen_addresses_through():
    assert check_addresses("h", ["127.0.0.1"], TargetPolicy(allow_private=True))
    policy = TargetPolicy.of(False, ["10.20.0.0/16", "fd00::/8"])
    assert check_addresses("h", ["10.20.3.4", "fd00::5"], policy)
    with pytest.raises(RefusedTarget):
        check_addresses("h", ["10.21.0.1"], policy)
    with pytest.raises(RefusedTarget):
        check_addresses("h", ["127.0.0.1"], policy)
    # An IPv6 zone does not hide a link-local address.
    with pytest.raises(RefusedTarget, match="link-local"):
        check_addresses("h", ["fe80::1%eth0"], DEFAULT)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http:///path", "no host"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://example.com/#frag", "fragment"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://example.com/" + "a" * 2100, "longer than"),
    ],
)
def test_urls_that_are_not_webhook_targets(url, message):
    with pytest.raises(RefusedTarget, match=message):
        parse_target(url)


def test_a_target_keeps_its_name_for_host_and_sni():
    target = parse_target("https://Hooks.Example.com/in?x=1")
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 443)
    assert target.host_header == "hooks.example.com" and not target.is_ip_literal
    assert parse_target("http://[::1]:8080/").host_header == "[::1]:8080"
    assert parse_target("http://1.2.3.4/").is_ip_literal
    assert parse_target("https://bücher.example/").host_header == "xn--bcher-kva.example"


def test_at_send_time_a_name_now_resolving_inside_is_refused_before_connecting():
    """DNS changed since registration: the address checked is the one resolved now."""
    answers = iter([["8.8.8.8"], ["127.0.0.1"]])

    def resolver(host: str, port: int) -> list[str]:
        return next(answers)

    assert check_addresses("rebind.example", resolver("rebind.example", 80), DEFAULT)
    sent = post_signed("http://rebind.example/hook", b"{}", {}, DEFAULT, 1.0, resolver)
    assert sent.outcome == "failed" and sent.status_code is None
    assert sent.error == "refused: rebind.example resolves to 127.0.0.1 is loopback"


def test_an_unresolvable_name_is_retried_later():
    def resolver(host: str, port: int) -> list[str]:
        raise LookupError(f"{host} does not resolve")

    sent = post_signed("https://gone.example/", b"{}", {}, DEFAULT, 1.0, resolver)
    assert (sent.outcome, sent.error) == ("retry", "gone.example does not resolve")


# --- backoff


def test_retry_delays_grow_exponentially_with_jitter_and_a_cap():
    rng = random.Random(7)
    for attempt, step in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (9, 30.0)]:
        delays = [retry_delay(attempt, 2.0, 30.0, rng) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays), attempt
        assert max(delays) - min(delays) > step / 4  # jittered, not fixed


def test_the_retry_schedule_fits_the_window():
    assert retry_schedule(30, 3000, 86_400)[:8] == [30, 60, 120, 240, 480, 960, 1920, 3000]
    schedule = retry_schedule(30, 3000, 86_400)
    assert sum(schedule) <= 86_400 < sum(schedule) + 3000
    assert retry_schedule(1, 1, 3.5) == [1, 1, 1]


# --- events and settings


def test_event_lists_are_normalized():
    assert normalized_events(["update", "insert", "update"]) == ["insert", "update"]
    assert normalized_events(["insert", "update", "delete"]) == ["*"]
    assert normalized_events(["delete", "*"]) == ["*"]
    assert wants(["*"], "delete") and wants(["insert"], "insert")
    assert not wants(["insert"], "delete")


def test_webhook_settings_are_checked():
    settings = settings_from_env({"WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8, fd00::/8"})
    assert settings.webhook_allowed_networks == ("10.0.0.0/8", "fd00::/8")
    assert settings.webhook_allow_private_targets is False
    with pytest.raises(SettingsError, match="WEBHOOK_ALLOWED_NETWORKS"):
        settings_from_env({"WEBHOOK_ALLOWED_NETWORKS": "intranet"})
    with pytest.raises(SettingsError, match=r"WEBHOOK_ALLOW_PRIVATE_TARGETS.*prod refuses"):
        settings_from_env({**PROD_ENV, "WEBHOOK_ALLOW_PRIVATE_TARGETS": "1"})
    with pytest.raises(SettingsError, match="below CELERY_VISIBILITY_TIMEOUT_SECONDS"):
        settings_from_env({"WEBHOOK_RETRY_BACKOFF_MAX_SECONDS": "3600"})
    with pytest.raises(SettingsError, match="WEBHOOK_TIMEOUT_SECONDS"):
        settings_from_env({"WEBHOOK_TIMEOUT_SECONDS": "0"})
    allowed = settings_from_env({"WEBHOOK_ALLOW_PRIVATE_TARGETS": "true"})
    assert allowed.webhook_allow_private_targets
