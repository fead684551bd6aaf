"""APP_MODULES: an app's own modules, imported by the API (their routes served beside ours,
their job types known) and by the workers."""

from __future__ import annotations

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from backend.app import create_app
from backend.config import SettingsError
from backend.jobs.types import JOB_TYPES
from workers.celery_app import create_celery_app


async def test_an_app_module_adds_its_routes_and_job_types(settings, clock):
    yours = msgspec.structs.replace(settings, app_modules=("tests.e2e.app",))
    async with AsyncTestClient(create_app(yours, clock=clock)) as client:
        response = await client.post("/test/echo", json={"text": "mine"})
        assert response.status_code == 201 and response.json() == {"text": "mine"}
    assert "e2e_effect" in JOB_TYPES  # tests/e2e/worker_tasks.py, which the module imports
    assert "tests.e2e.app" in create_celery_app(yours).conf.imports


def test_a_module_that_cannot_be_imported_stops_the_api_naming_it(settings):
    with pytest.raises(SettingsError, match=r"APP_MODULES names 'myapp\.nowhere'"):
        create_app(msgspec.structs.replace(settings, app_modules=("myapp.nowhere",)))
