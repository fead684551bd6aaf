"""The e2e stack's own module, loaded by `litebase api` through APP_MODULES as an app's would be:
one echo route, so e2e tests can send bodies before any feature does, and the test-only job
types of tests/e2e/worker_tasks.py."""

from __future__ import annotations

import msgspec
from litestar import post

from tests.e2e import worker_tasks  # noqa: F401 - the test-only job types


class Echo(msgspec.Struct):
    text: str


@post("/test/echo", sync_to_thread=False)
def echo(data: Echo) -> Echo:
    return data


route_handlers = [echo]
