"""The lean request-metrics middleware records what Litestar's Prometheus middleware does."""

from __future__ import annotations

from litestar import Litestar, get
from litestar.exceptions import NotFoundException
from litestar.plugins.prometheus import PrometheusConfig, PrometheusMiddleware
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from backend.lib.request_metrics import RequestMetricsMiddleware


@get("/things/{thing_id:int}", sync_to_thread=False)
def thing(thing_id: int) -> dict[str, int]:
    if thing_id == 0:
        raise NotFoundException("no such thing")
    if thing_id < 0:
        raise RuntimeError("boom")
    return {"id": thing_id}


def _app(prefix: str, middleware: type[PrometheusMiddleware]) -> Litestar:
    config = PrometheusConfig(
        app_name="metrics-test", prefix=prefix, group_path=True, middleware_class=middleware
    )
    return Litestar([thing], middleware=[config.middleware], debug=False, logging_config=None)


def _samples(prefix: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the prefix's metrics but the timings (which differ run to run)."""
    found = {}
    for metric in REGISTRY.collect():
        for sample in metric.samples:
            if not sample.name.startswith(prefix + "_") or sample.name.endswith(
                ("_sum", "_bucket", "_created")
            ):
                continue
            found[(sample.name.removeprefix(prefix), tuple(sorted(sample.labels.items())))] = (
                sample.value
            )
    return found


async def test_the_same_requests_give_the_same_metrics_as_the_stock_middleware():
    for prefix, middleware in (
        ("stockmw", PrometheusMiddleware),
        ("leanmw", RequestMetricsMiddleware),
    ):
        async with AsyncTestClient(_app(prefix, middleware)) as client:
            for thing_id in (1, 2, 0, -1, 1):
                await client.get(f"/things/{thing_id}")
    lean = _samples("leanmw")
    assert lean == _samples("stockmw")
    path = (("app_name", "metrics-test"), ("method", "GET"), ("path", "/things/{thing_id}"))
    assert lean[("_requests_total", tuple(sorted((*path, ("status_code", "200")))))] == 3
    assert lean[("_requests_error_total", tuple(sorted((*path, ("status_code", "500")))))] == 1
    assert (
        lean[("_request_duration_seconds_count", tuple(sorted((*path, ("status_code", "404")))))]
        == 1
    )
    assert lean[("_requests_in_progress", tuple(sorted((*path, ("status_code", "200")))))] == 0
