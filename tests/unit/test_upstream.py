"""The gateway's transport: how upstream failures are sorted (fall back, retry, refuse), and
which proxy a provider is reached through."""

import aiohttp
import pytest

from backend.lib.upstream import (
    MAX_RETRY_SECONDS,
    backoff_seconds,
    check_chunk,
    proxy_for,
    status_error,
    translate,
)

OPENAI_ERROR = b'{"error": {"message": "bad tools", "type": "invalid_request_error"}}'


@pytest.mark.parametrize(
    ("status", "fallback", "retry"),
    [
        (500, True, True),
        (503, True, True),
        (429, True, True),
        (408, True, True),
        (409, True, True),
        (401, True, False),  # this provider's key is wrong; another may work, this one won't
        (404, True, False),
        (400, False, False),  # the request is at fault: nowhere would take it
        (413, False, False),
        (422, False, False),
    ],
)
def test_a_status_says_whether_to_retry_and_whether_a_fallback_may_help(status, fallback, retry):
    error = status_error(status, b"", {})
    assert (error.fallback, error.retry, error.status) == (fallback, retry, status)


def test_a_refusal_keeps_only_the_providers_message():
    assert status_error(400, OPENAI_ERROR, {}).reason == "bad tools"
    assert status_error(400, b"<html>", {}).reason == "the request was refused"
    assert status_error(500, OPENAI_ERROR, {}).reason == "upstream answered 500"


@pytest.mark.parametrize(
    ("headers", "retry"),
    [({"x-should-retry": "false"}, False), ({"x-should-retry": "true"}, True), ({}, True)],
)
def test_the_provider_may_say_whether_to_retry(headers, retry):
    assert status_error(503, b"", headers).retry is retry
    assert status_error(401, b"", {"x-should-retry": "true"}).retry is True


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "2"}, 2.0),
        ({"retry-after-ms": "20", "retry-after": "9"}, 0.02),
        ({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),  # a date: the backoff decides
        ({"retry-after": "3600"}, None),  # more than a minute: not waited for
        ({"retry-after": "-1"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_honoured_up_to_a_minute(headers, seconds):
    assert status_error(429, b"", headers).retry_after == seconds


@pytest.mark.parametrize(
    ("exc", "reason", "retry"),
    [
        (TimeoutError(), "upstream timed out", True),
        (aiohttp.ServerTimeoutError("read"), "upstream timed out", True),
        (aiohttp.ClientConnectionError("refused"), "upstream connection failed", True),
        (aiohttp.ClientPayloadError("cut"), "upstream connection failed", True),
        (ConnectionResetError(), "upstream connection failed", True),
        (ValueError("Expecting value"), "upstream output is malformed", False),
    ],
)
def test_transport_failures_fall_back_without_internals(exc, reason, retry):
    error = translate(exc)
    assert (error.reason, error.fallback, error.retry) == (reason, True, retry)


def test_anything_else_is_not_an_upstream_failure():
    with pytest.raises(RuntimeError):
        translate(RuntimeError("a bug of ours"))


def test_backoff_doubles_with_jitter_up_to_a_ceiling():
    for attempt, most in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)]:
        waits = [backoff_seconds(attempt) for _ in range(200)]
        assert all(0.75 * most <= wait <= most for wait in waits)
        assert len(set(waits)) > 1  # jittered, so many clients don't retry in step
    assert backoff_seconds(50) <= MAX_RETRY_SECONDS


def test_an_event_carrying_an_error_is_a_failure():
    with pytest.raises(Exception, match="mid-stream"):
        check_chunk({"error": {"message": "overloaded"}})


@pytest.mark.parametrize(
    ("env", "url", "proxy", "login"),
    [
        ({}, "https://api.openai.com/v1", None, None),
        (
            {"HTTPS_PROXY": "http://proxy.corp:3128"},
            "https://api.openai.com/v1",
            "http://proxy.corp:3128",
            None,
        ),
        ({"HTTPS_PROXY": "http://proxy.corp:3128"}, "http://ollama:11434/v1", None, None),
        (
            {"HTTP_PROXY": "http://proxy.corp:3128"},
            "http://ollama:11434/v1",
            "http://proxy.corp:3128",
            None,
        ),
        (
            {"HTTPS_PROXY": "http://proxy.corp:3128", "NO_PROXY": "openai.com,localhost"},
            "https://api.openai.com/v1",
            None,
            None,
        ),
        (
            {"HTTPS_PROXY": "http://me:p%40ss@proxy.corp:3128"},
            "https://api.openai.com/v1",
            "http://proxy.corp:3128",
            ("me", "p@ss"),
        ),
    ],
)
def test_the_environments_proxy_is_used_unless_no_proxy_covers_the_host(
    monkeypatch, env, url, proxy, login
):
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    found, auth = proxy_for(url)
    assert found == proxy
    assert (None if auth is None else (auth.login, auth.password)) == login


def test_an_event_with_an_empty_error_is_a_chunk():
    # Some servers send `"error": null` on every chunk; the openai client read those as chunks.
    assert check_chunk({"choices": [], "error": None})["choices"] == []
