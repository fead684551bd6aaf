"""Issue 18.14: sign-up, password reset and sign-in-code requests told whether an address had
an account, by their answer (sign-up: 409 against 201) or by their time (a known address
wrote a token and queued a mail before answering). Now each answers the same for every
address, at once, and does the work after the answer. Sent to `litebase api` as shipped."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import aclosing

import httpx
import pytest

from tests.e2e.conftest import PASSWORD, Stack, api_beside, signed_up

pytestmark = pytest.mark.xdist_group("e2e")

PAIRS = 15


def _unknown() -> str:
    return f"nobody-{uuid.uuid4().hex[:10]}@example.com"


async def _timed(client: httpx.AsyncClient, path: str, body: dict) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await client.post(path, json=body)
    return response, time.perf_counter() - started


async def _compare(client, path: str, known: dict, unknown) -> None:
    """The same answer for a known and an unknown address, and no telling them apart by the
    median time of PAIRS interleaved requests (within twice the other, plus 5 ms of noise)."""
    known_times, unknown_times = [], []
    answers = set()
    for _ in range(PAIRS):
        for body, times in ((known, known_times), (unknown(), unknown_times)):
            response, took = await _timed(client, path, body)
            answers.add((response.status_code, response.content))
            times.append(took)
    assert len(answers) == 1, answers
    k, u = statistics.median(known_times), statistics.median(unknown_times)
    assert max(k, u) <= 2 * min(k, u) + 0.005, (k, u)


@pytest.fixture(scope="module")
def verifying(stack, tmp_path_factory) -> Iterator[Stack]:
    required = {
        "AUTH_REQUIRE_VERIFIED_EMAIL": "true",
        # The work a taken address could skip is hashing the password: at the default cost, as
        # in production, so skipping it would show in the time.
        "PASSWORD_HASH_MEMORY_KIB": "19456",
        "PASSWORD_HASH_TIME_COST": "2",
    }
    with api_beside(stack, required, tmp_path_factory.mktemp("oracle") / "api.log") as api:
        yield api


async def test_reset_and_sign_in_code_requests_do_not_tell_who_has_an_account(stack, inbox):
    async with aclosing(await signed_up(stack)) as user:
        email = user.tokens["user"]["email"]  # type: ignore[attr-defined]
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as anonymous:
        await _compare(
            anonymous, "/auth/password/forgot", {"email": email}, lambda: {"email": _unknown()}
        )
        await _compare(anonymous, "/auth/otp", {"email": email}, lambda: {"email": _unknown()})
    # The work still happens, after the answer.
    await asyncio.to_thread(inbox, email, "Reset your password")
    await asyncio.to_thread(inbox, email, "sign-in code")


async def test_sign_up_answers_the_same_for_a_taken_address_when_verification_is_on(
    verifying, inbox
):
    taken = _unknown()
    async with httpx.AsyncClient(base_url=verifying.base_url, timeout=10) as anonymous:
        made = await anonymous.post("/auth/signup", json={"email": taken, "password": PASSWORD})
        assert made.status_code == 202 and made.json() == {"status": "check_your_mail"}
        await asyncio.to_thread(inbox, taken, "Confirm your email address")
        await _compare(
            anonymous,
            "/auth/signup",
            {"email": taken, "password": PASSWORD},
            lambda: {"email": _unknown(), "password": PASSWORD},
        )
    # The address's owner hears of it; nobody else learns anything.
    await asyncio.to_thread(inbox, taken, "You already have an account")
