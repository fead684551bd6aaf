"""System: health and readiness, /metrics for the operator's scraper, and in dev the mail
the console backend delivered (/dev/mail)."""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from backend.capability import Capability
from backend.config import Settings
from backend.db.migrate import head_revisions
from backend.lib.request_metrics import RequestMetricsMiddleware
from backend.logs import RequestIdMiddleware
from backend.problems import Problem, may_answer
from backend.system.devmail import DevMailController
from backend.system.routes import SystemController


def metrics_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """/metrics tells the routes, rates and errors of the whole API: it answers sources in
    METRICS_ALLOWED_NETWORKS (a scraper inside the VPC; the ALB's clients are not) or a bearer
    of METRICS_TOKEN, and no one else."""
    settings: Settings = connection.app.state.settings
    host = connection.client.host if connection.client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None and any(
        address in ipaddress.ip_network(n, strict=False) for n in settings.metrics_allowed_networks
    ):
        return
    token = settings.metrics_token
    sent = connection.headers.get("authorization", "")
    if token and hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
        return
    raise Problem(403, "Metrics are for the operator's scraper", code="forbidden")


class MetricsController(PrometheusController):
    path = "/metrics"
    guards = [metrics_guard]
    opt = may_answer(403)


def system_capability(settings: Settings) -> Capability:
    prometheus = PrometheusConfig(
        app_name="litebase",
        prefix="litebase",
        group_path=True,
        exclude=["/metrics"],
        middleware_class=RequestMetricsMiddleware,
    )
    return Capability(
        "system",
        routes=[
            SystemController,
            MetricsController,
            # Dev only: outside LITEBASE_ENV=dev the route does not exist (404).
            *([DevMailController] if settings.is_dev else []),
        ],
        # The request id first: every later middleware and handler logs with it.
        middleware=[RequestIdMiddleware(), prometheus.middleware],
        state={"migration_heads": head_revisions()},
    )
