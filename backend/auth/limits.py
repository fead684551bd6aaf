"""Request limits per caller on every route that asks who is calling (issue 18.6).

A session's requests count against its user (all of the user's sessions together), an API
key's against the key, an anonymous caller's against its address (the right-most untrusted
one: FORWARDED_ALLOW_IPS). The bucket is chosen only after the credential is verified, so
nobody can spend someone else's allowance with a forged token. A minute's window per bucket,
counted in Redis (one transaction), shared by every API process; over the limit is 429 with
Retry-After. Each limit is a setting; 0 turns it off. While Redis is unreachable requests are
served uncounted (the rest of the app fails on its own terms, and /ready says why).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from redis.asyncio import Redis
from redis.exceptions import RedisError

from backend.config import Settings
from backend.errors import TooMany
from backend.lib.counters import count_in_window

if TYPE_CHECKING:
    from backend.identity import Principal

log = logging.getLogger(__name__)

WINDOW_SECONDS = 60


def bucket_of(principal: Principal | None, ip: str | None, settings: Settings) -> tuple[str, int]:
    """The caller's bucket and its limit per minute."""
    if principal is None:
        return f"ip:{ip or 'unknown'}", settings.rate_limit_anonymous_per_minute
    if principal.api_key_id is not None:
        return f"key:{principal.api_key_id}", settings.rate_limit_key_per_minute
    return f"user:{principal.user_id}", settings.rate_limit_user_per_minute


async def count_request(
    redis: Redis, settings: Settings, principal: Principal | None, ip: str | None
) -> None:
    """Count one request of this caller; 429 past its limit."""
    bucket, limit = bucket_of(principal, ip, settings)
    if not limit:
        return
    try:
        count, retry_after = await count_in_window(
            redis, f"litebase:requests:{bucket}", WINDOW_SECONDS
        )
    except RedisError as exc:  # no counter: serve (and /ready says Redis is down) rather than fail
        log.warning("request limits are off while Redis is unreachable: %s", exc)
        return
    if count > limit:
        raise TooMany(
            f"Too many requests: at most {limit} a minute; try again in {retry_after} s",
            code="rate_limited",
            headers={"Retry-After": str(retry_after)},
        )
