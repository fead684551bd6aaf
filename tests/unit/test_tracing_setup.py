"""Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT is set: no tracer provider installed, the
SDK not even imported, no middleware on the app. Each case builds the app in a fresh Python
(a tracer provider is set once per process), without connecting to anything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend.lib.tracing import traces_url

ROOT = Path(__file__).parents[2]

BUILD_AND_LOOK = """
import json, sys
from opentelemetry import trace
from backend.app import create_app
from backend.lib.tracing import tracing_on
from sqlalchemy import event
from sqlalchemy.orm import Session
from backend.events.tracing import _stamp_transaction

app = create_app()
print(json.dumps({
    "provider": type(trace.get_tracer_provider()).__name__,
    "sdk_imported": "opentelemetry.sdk.trace" in sys.modules,
    "tracing_on": tracing_on(),
    "plugin": "OpenTelemetryPlugin" in {type(p).__name__ for p in app.plugins},
    "writes_stamped": event.contains(Session, "before_flush", _stamp_transaction),
}))
"""


def _built_app(**env: str) -> dict[str, object]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("OTEL_") and k != "DATABASE_URL"
    }
    environ.update(
        LITEBASE_ENV_FILE=os.devnull,
        LITEBASE_ENV="test",
        # Never connected to: building the app opens nothing.
        DATABASE_URL="postgresql://nobody:@127.0.0.1:9/nothing",
        REDIS_URL="redis://127.0.0.1:9/0",
        **env,
    )
    done = subprocess.run(
        [sys.executable, "-c", BUILD_AND_LOOK],
        env=environ,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_without_an_endpoint_nothing_is_installed():
    assert _built_app() == {
        "provider": "ProxyTracerProvider",
        "sdk_imported": False,
        "tracing_on": False,
        "plugin": False,
        "writes_stamped": False,
    }


def test_with_an_endpoint_the_sdk_provider_and_the_plugin_are_installed():
    # Nothing is sent until a batch of spans is due, so no collector need listen.
    assert _built_app(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9") == {
        "provider": "TracerProvider",
        "sdk_imported": True,
        "tracing_on": True,
        "plugin": True,
        "writes_stamped": True,
    }


@pytest.mark.parametrize(
    ("endpoint", "url"),
    [
        ("http://collector:4318", "http://collector:4318/v1/traces"),
        ("http://collector:4318/", "http://collector:4318/v1/traces"),
        ("https://otlp.example.com/otlp", "https://otlp.example.com/otlp/v1/traces"),
    ],
)
def test_the_traces_url_is_under_the_endpoint_as_otel_means_it(endpoint, url):
    assert traces_url(endpoint) == url
