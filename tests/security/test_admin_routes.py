"""Admins-only routes are guarded (``guards=[admin_only]``): each one refuses an anonymous
caller with 401 and a signed-in member with 403, before reading its body, and the OpenAPI
document says it needs a bearer token. A route that lost its guard fails the first test."""

from __future__ import annotations

import uuid

import pytest

from backend.auth.guards import admin_only
from backend.openapi_document import finished_document
from tests.integration.conftest import bearer

SOMEONE = uuid.UUID("00000000-0000-4000-8000-000000000001")  # fixed: xdist collects it twice
ADMIN_ROUTES = [
    ("GET", "/admin/users"),
    ("PATCH", f"/admin/users/{SOMEONE}"),
    ("DELETE", f"/admin/users/{SOMEONE}"),
    ("GET", "/webhooks"),
    ("POST", "/webhooks"),
    ("GET", f"/webhooks/{SOMEONE}"),
    ("PATCH", f"/webhooks/{SOMEONE}"),
    ("DELETE", f"/webhooks/{SOMEONE}"),
    ("POST", f"/webhooks/{SOMEONE}/rotate-secret"),
    ("GET", f"/webhooks/{SOMEONE}/deliveries"),
    ("GET", f"/webhooks/deliveries/{SOMEONE}"),
    ("POST", f"/webhooks/deliveries/{SOMEONE}/replay"),
    ("GET", "/ai/budgets"),
    ("GET", f"/ai/budgets/user/{SOMEONE}"),
    ("PUT", f"/ai/budgets/user/{SOMEONE}"),
    ("DELETE", f"/ai/budgets/user/{SOMEONE}"),
]


def _guarded_operations(app) -> set[tuple[str, str]]:
    """(method, path template) of every handler whose guards include admin_only."""
    found = set()
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if admin_only in handler.resolve_guards():
                found |= {(m, route.path) for m in handler.http_methods if m != "OPTIONS"}
    return found


async def test_the_guarded_routes_are_the_admin_routes(client):
    guarded = _guarded_operations(client.app)
    assert len(guarded) == len(ADMIN_ROUTES), sorted(guarded)
    spec = finished_document(client.app).to_schema()
    for method, path in guarded:
        operation = spec["paths"][path.replace(":uuid", "").replace(":str", "")][method.lower()]
        assert operation["security"] == [{"bearer": []}], (method, path)
    # Litestar's OPTIONS answer (the methods of a path) stays open, as it was.
    assert (await client.options("/admin/users")).status_code == 204


@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES)
async def test_an_admin_route_refuses_anonymous_callers_and_members(
    client, sign_up, admin, method, path
):
    body = {} if method in ("POST", "PUT", "PATCH") else None  # refused before it is read
    anonymous = await client.request(method, path, json=body)
    assert anonymous.status_code == 401, anonymous.text
    assert anonymous.headers["content-type"].startswith("application/problem+json")
    assert anonymous.headers["www-authenticate"] == "Bearer"
    assert anonymous.json()["code"] == "unauthenticated"
    member = bearer((await sign_up())["access_token"])
    refused = await client.request(method, path, json=body, headers=member)
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert (refused.json()["detail"], refused.json()["code"]) == (
        "Only admins may do this",
        "forbidden",
    )
    admitted = await client.request(method, path, json=body, headers=admin)
    assert admitted.status_code not in (401, 403), admitted.text
