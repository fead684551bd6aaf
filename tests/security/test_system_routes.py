"""Issue 18.13: /ready told anyone why a dependency failed (addresses, driver errors), and
/metrics told anyone every route's traffic and errors."""

from __future__ import annotations

import msgspec
from litestar.testing import AsyncTestClient

from backend.app import create_app


async def test_metrics_answer_only_an_allowed_source_or_the_scrape_token(settings):
    # The test client's address is not an IP in METRICS_ALLOWED_NETWORKS: a stranger.
    guarded = msgspec.structs.replace(settings, metrics_token="scrape-me")
    async with AsyncTestClient(create_app(guarded)) as client:
        assert (await client.get("/metrics")).status_code == 403
        wrong = await client.get("/metrics", headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 403
        right = await client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert right.status_code == 200
    tokenless = msgspec.structs.replace(settings, metrics_token="")
    async with AsyncTestClient(create_app(tokenless)) as client:
        refused = await client.get("/metrics", headers={"Authorization": "Bearer "})
        assert refused.status_code == 403


async def test_ready_tells_only_admins_why(client, admin, settings, tmp_path):
    gone = f"postgresql://postgres:@/postgres?host={tmp_path}"
    broken = msgspec.structs.replace(settings, database_url=gone, ready_timeout_seconds=1.0)
    async with AsyncTestClient(create_app(broken)) as down:
        response = await down.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["postgres"] == "failing"
    assert str(tmp_path) not in response.text
    healthy = await client.get("/ready", headers=admin)
    assert healthy.json()["checks"] == {"postgres": "ok", "redis": "ok", "migrations": "ok"}
