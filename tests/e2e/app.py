"""The production app plus one echo route, so e2e tests can send bodies before any feature does,
and the test-only job types of tests/e2e/worker_tasks.py."""

from __future__ import annotations

import msgspec
from litestar import Litestar, post

from backend.app import create_app
from tests.e2e import worker_tasks  # noqa: F401 - the test-only job types


class Echo(msgspec.Struct):
    text: str


@post("/test/echo", sync_to_thread=False)
def echo(data: Echo) -> Echo:
    return data


def create_app_with_test_routes() -> Litestar:
    return create_app(route_handlers=[echo])
