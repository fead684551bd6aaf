"""Sending one delivery, the worker side: claim it, sign it, post it to a checked address, log
the attempt, and say when to try again (workers/tasks/webhooks.py is the thin task around it).

Each attempt resolves the host again and checks every address (backend/webhooks/targets.py),
then connects to the checked address itself, with the URL's host in ``Host`` and in TLS SNI
(the certificate is verified for that name). Redirects are never followed: a 3xx fails the
delivery, so a receiver cannot bounce us to an address the check would have refused.
"""

from __future__ import annotations

import random
import ssl
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import msgspec
import psycopg
import uuid_utils.compat as uuid_utils
from celery.utils.time import get_exponential_backoff_interval

import backend
from backend.config import Settings
from backend.webhooks.signing import (
    DELIVERY_ID_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    derive_secret,
    signature_header,
)
from backend.webhooks.targets import (
    RefusedTarget,
    Resolver,
    TargetPolicy,
    check_addresses,
    parse_target,
    resolve,
)

Outcome = Literal["succeeded", "retry", "failed"]
USER_AGENT = f"Litebase-Webhooks/{backend.__version__}"
# A copy of the task arriving this much before the delivery is due does nothing: the copy
# that is due (or beat's webhooks.requeue) sends it.
_EARLY_SECONDS = 2.0
_JITTER = random.Random()  # noqa: S311 - spreads retries, guards nothing


@dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    status_code: int | None
    latency_ms: float
    error: str | None


def _step(base: float, maximum: float, retries: int) -> float:
    """``min(maximum, base * 2^retries)`` by Celery's backoff, in milliseconds: Celery's works
    in whole units, the settings are seconds that may be fractions."""
    millis = get_exponential_backoff_interval(round(base * 1000), retries, round(maximum * 1000))
    return millis / 1000


def retry_delay(
    round_attempt: int, base: float, maximum: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after the ``round_attempt``-th failed attempt (1, 2, …): exponential,
    capped, with equal jitter (between half the step and the step), so retries of many
    deliveries spread out but never come back at once."""
    step = _step(base, maximum, round_attempt - 1)
    return step / 2 + (rng or _JITTER).uniform(0, step / 2)


def retry_schedule(base: float, maximum: float, window: float) -> list[float]:
    """The longest waits between attempts a delivery can see before it gives up (no jitter):
    what docs/webhooks.md tabulates."""
    waits: list[float] = []
    elapsed = 0.0
    while True:
        step = _step(base, maximum, len(waits))
        if elapsed + step > window:
            return waits
        waits.append(step)
        elapsed += step


def post_signed(
    url: str,
    body: bytes,
    headers: dict[str, str],
    policy: TargetPolicy,
    timeout: float,
    resolver: Resolver = resolve,
    verify: ssl.SSLContext | bool = True,
) -> AttemptResult:
    """POST ``body`` to ``url`` through an address checked just now, never following a
    redirect. Refused targets and redirects fail for good; the rest may be retried.
    ``verify`` is the TLS trust (the system's CAs unless a test brings its own)."""
    started = time.perf_counter()

    def result(outcome: Outcome, status_code: int | None, error: str | None) -> AttemptResult:
        return AttemptResult(outcome, status_code, (time.perf_counter() - started) * 1000, error)

    try:
        target = parse_target(url)
        addresses = check_addresses(target.host, resolver(target.host, target.port), policy)
    except RefusedTarget as exc:
        return result("failed", None, f"refused: {exc}")
    except LookupError as exc:
        return result("retry", None, str(exc))
    # The name is what the receiver serves and what its certificate names; the address is
    # where we connect, never looked up again.
    extensions = {}
    if target.scheme == "https" and not target.is_ip_literal:
        extensions["sni_hostname"] = target.host
    sent_headers = {**headers, "Host": target.host_header}
    error = "no address answered"
    # No connection pool across deliveries: pooled connections are keyed by address, and one
    # made for another host name (SNI, certificate) on the same address must not be reused.
    with httpx.Client(
        timeout=timeout, follow_redirects=False, trust_env=False, verify=verify
    ) as client:
        for address in addresses:
            request = client.build_request(
                "POST",
                httpx.URL(url).copy_with(host=str(address)),
                content=body,
                headers=sent_headers,
                extensions=extensions,
            )
            try:
                response = client.send(request, stream=True)  # the body is never read
                response.close()
            except httpx.ConnectError as exc:
                error = f"could not connect to {address}: {exc}"
                continue  # another address of the host may answer
            except httpx.TimeoutException:
                return result("retry", None, f"no answer within {timeout} s")
            except httpx.HTTPError as exc:
                return result("retry", None, f"{type(exc).__name__}: {exc}")
            code = response.status_code
            if 200 <= code < 300:
                return result("succeeded", code, None)
            if 300 <= code < 400:
                location = response.headers.get("location", "")
                return result(
                    "failed",
                    code,
                    f"answered {code} (redirect to {location!r}); webhooks do not follow "
                    "redirects: register the final URL",
                )
            return result("retry", code, f"answered {code}")
    return result("retry", None, error)


_LOAD = """
SELECT d.status, d.event_id, d.payload, d.next_attempt_at > now() + make_interval(secs => %s),
       e.url, e.enabled, e.secret_salt,
       CASE WHEN e.previous_secret_expires_at > now() THEN e.previous_secret_salt END
FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
WHERE d.id = %s
"""

_CLAIM = """
UPDATE webhook_deliveries
SET attempts = attempts + 1, round_attempts = round_attempts + 1,
    leased_until = now() + make_interval(secs => %s), updated_at = now()
WHERE id = %s AND status = 'pending' AND (leased_until IS NULL OR leased_until < now())
RETURNING attempts, round_attempts, extract(epoch FROM now() - round_started_at)::float8
"""

_FINISH = """
UPDATE webhook_deliveries
SET status = %s, finished_at = now(), leased_until = NULL, last_status_code = %s,
    last_error = %s, updated_at = now()
WHERE id = %s
"""

_AGAIN = """
UPDATE webhook_deliveries
SET next_attempt_at = now() + make_interval(secs => %s), leased_until = NULL,
    last_status_code = %s, last_error = %s, updated_at = now()
WHERE id = %s
"""


def _finish(conn: psycopg.Connection[Any], delivery_id: str, status: str, error: str) -> None:
    conn.execute(_FINISH, (status, None, error, delivery_id))


def deliver(
    conn: psycopg.Connection[Any],
    delivery_id: str,
    settings: Settings,
    policy: TargetPolicy,
    resolver: Resolver = resolve,
) -> float | None:
    """Make one attempt at a pending delivery; returns the seconds until the next one, or None
    when there is nothing more to do (sent, failed for good, or not this copy's turn).

    Idempotent: a delivery that is finished, held by another worker, or not yet due is left
    alone, so duplicate task messages never send twice at once.
    """
    found = conn.execute(_LOAD, (_EARLY_SECONDS, delivery_id)).fetchone()
    if found is None:
        return None  # the endpoint (and its deliveries) was deleted
    status, event_id, payload, early, url, enabled, salt, previous_salt = found
    if status != "pending" or early:
        return None
    if not enabled:
        _finish(conn, delivery_id, "failed", "the webhook was disabled before it was sent")
        return None
    lease = settings.webhook_timeout_seconds * 3 + 30
    claimed = conn.execute(_CLAIM, (lease, delivery_id)).fetchone()
    if claimed is None:
        return None  # another worker holds it
    attempt, round_attempt, round_elapsed = claimed

    body = msgspec.json.encode(payload)
    secrets_ = [derive_secret(settings.secret_key, salt)]
    if previous_salt:
        secrets_.append(derive_secret(settings.secret_key, previous_salt))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: str(event_id),
        DELIVERY_ID_HEADER: delivery_id,
        SIGNATURE_HEADER: signature_header(secrets_, int(time.time()), body),
    }
    sent = post_signed(url, body, headers, policy, settings.webhook_timeout_seconds, resolver)

    wait: float | None = None
    with conn.transaction():
        conn.execute(
            "INSERT INTO webhook_attempts (id, delivery_id, attempt, status_code, latency_ms,"
            " error, succeeded, created_at, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, now(), now())",
            (
                uuid_utils.uuid7(),
                delivery_id,
                attempt,
                sent.status_code,
                sent.latency_ms,
                sent.error,
                sent.outcome == "succeeded",
            ),
        )
        if sent.outcome == "retry":
            wait = retry_delay(
                round_attempt,
                settings.webhook_retry_backoff_seconds,
                settings.webhook_retry_backoff_max_seconds,
            )
            if round_elapsed + wait > settings.webhook_retry_window_seconds:
                wait = None
                error = (
                    f"{sent.error}; gave up after {round_attempt} attempts in "
                    f"{round_elapsed:.0f} s (WEBHOOK_RETRY_WINDOW_SECONDS)"
                )
                conn.execute(_FINISH, ("failed", sent.status_code, error, delivery_id))
            else:
                conn.execute(_AGAIN, (wait, sent.status_code, sent.error, delivery_id))
        else:
            conn.execute(_FINISH, (sent.outcome, sent.status_code, sent.error, delivery_id))
    return wait


def overdue_deliveries(conn: psycopg.Connection[Any], after_seconds: float) -> list[str]:
    """Pending deliveries due ``after_seconds`` ago that nobody holds: their task message was
    lost (the broker was down, or a worker died). Beat hands them on again."""
    rows = conn.execute(
        "SELECT id::text FROM webhook_deliveries WHERE status = 'pending'"
        " AND next_attempt_at < now() - make_interval(secs => %s)"
        " AND (leased_until IS NULL OR leased_until < now())"
        " ORDER BY next_attempt_at LIMIT 1000",
        (after_seconds,),
    ).fetchall()
    return [row[0] for row in rows]


def trim_deliveries(conn: psycopg.Connection[Any], retention_days: int) -> int:
    """Forget finished deliveries (and their attempts) older than the retention."""
    deleted = conn.execute(
        "DELETE FROM webhook_deliveries WHERE status <> 'pending'"
        " AND finished_at < now() - make_interval(days => %s)",
        (retention_days,),
    )
    return deleted.rowcount
