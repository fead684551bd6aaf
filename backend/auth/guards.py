"""Guards: who may reach a route at all, checked before its dependencies and body are read."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler

from backend.auth.deps import principal_of, provide_current
from backend.problems import Problem


async def admin_only(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Admins only: 401 for a caller who sent no token, 403 for one who is not an admin.

    Routes it guards still declare ``security=BEARER`` for the OpenAPI document. On a
    controller it also guards Litestar's own OPTIONS handler, which only lists a path's
    methods and answers anyone, as it did before this was a guard."""
    if isinstance(handler, HTTPRouteHandler) and handler.http_methods == {"OPTIONS"}:
        return
    assert isinstance(connection, Request)  # it guards HTTP routes
    current = await provide_current(await principal_of(connection))
    if not current.is_admin:
        raise Problem(403, "Only admins may do this", code="forbidden")
