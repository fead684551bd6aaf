"""Tracing across processes: a stack of its own with OTEL_EXPORTER_OTLP_ENDPOINT pointing at a
collector on loopback (tests/otlp_receiver.py). One request's trace id is followed from the
API's server span to the outbox relay, the Celery task in the worker and the call to the
(fake) model provider, in the spans the processes export."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Stack, finished_job, signed_up, stack_apart
from tests.otlp_receiver import Collector, ReceivedSpan, otlp_collector
from tests.support import Services

SERVER, CLIENT = 2, 3  # OTLP's SpanKind numbers


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with otlp_collector() as running:
        yield running


@pytest.fixture(scope="module")
def traced(
    stack: Stack, services: Services, collector: Collector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    overrides = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        # Batches leave every 100 ms rather than every 5 s, so the test waits less.
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    with stack_apart(stack, services, overrides, tmp_path_factory.mktemp("traced")) as apart:
        yield apart


def _request_span(collector: Collector, method: str, path: str) -> ReceivedSpan:
    return collector.wait_for(
        lambda s: s.service == "litebase-api" and s.kind == SERVER and s.name == f"{method} {path}",
        f"for {method} {path} from the API",
    )


def _in_trace(collector: Collector, trace_id: str, service: str, name: str) -> ReceivedSpan:
    return collector.wait_for(
        lambda s: s.trace_id == trace_id and s.service == service and s.name == name,
        f"{name!r} from {service} in trace {trace_id}",
    )


async def test_a_write_is_followed_through_the_relay_to_the_worker_and_the_provider(
    traced, collector
):
    client = await signed_up(traced)
    try:
        created = await client.post(
            "/collections/notes/records", json={"title": f"Traced {uuid.uuid4().hex[:8]}"}
        )
        assert created.status_code == 201, created.text
    finally:
        await client.aclose()

    request = _request_span(collector, "POST", "/collections/notes/records")
    trace_id = request.trace_id
    # The relay continued the writer's trace (the outbox row carried its traceparent)…
    hand_off = _in_trace(collector, trace_id, "litebase-api", "outbox hand-off")
    assert hand_off.parent_span_id == request.span_id
    # …and the embedding task it sent carried it on to the worker and its provider call.
    sent = _in_trace(collector, trace_id, "litebase-api", "apply_async/vectors.embed")
    assert sent.parent_span_id == hand_off.span_id
    run = _in_trace(collector, trace_id, "litebase-worker", "run/vectors.embed")
    assert run.parent_span_id == sent.span_id
    provider = _in_trace(collector, trace_id, "litebase-worker", "embeddings fake-embed")
    assert provider.kind == CLIENT
    assert provider.attributes["gen_ai.request.model"] == "fake-embed"


async def test_a_job_is_followed_to_the_worker_and_its_model_call(traced, collector):
    client = await signed_up(traced)
    try:
        note = (
            await client.post(
                "/collections/notes/records",
                json={"title": "Volcanoes", "body": "Lava is molten rock."},
            )
        ).json()
        submitted = await client.post(
            "/jobs",
            json={"type": "summarize_record", "input": {"collection": "notes", "id": note["id"]}},
        )
        assert submitted.status_code == 202, submitted.text
        job = await finished_job(client, submitted.json()["id"])
        assert job["status"] == "succeeded", job
    finally:
        await client.aclose()

    request = _request_span(collector, "POST", "/jobs")
    run = _in_trace(collector, request.trace_id, "litebase-worker", "run/jobs.run")
    chat = _in_trace(collector, request.trace_id, "litebase-worker", "chat fake-chat")
    assert chat.kind == CLIENT
    assert chat.attributes["litebase.model_alias"] == "gpt-4o-mini"  # the prompt's model
    assert run.trace_id == chat.trace_id == request.trace_id


async def test_a_gateway_call_in_the_api_is_a_span_of_its_request(traced, collector):
    client = await signed_up(traced)
    try:
        answered = await client.post(
            "/v1/chat/completions",
            json={"model": "chat", "messages": [{"role": "user", "content": "hello"}]},
        )
        assert answered.status_code == 200, answered.text
    finally:
        await client.aclose()

    request = _request_span(collector, "POST", "/v1/chat/completions")
    chat = _in_trace(collector, request.trace_id, "litebase-api", "chat fake-chat")
    assert chat.kind == CLIENT
    # Health probes make no spans.
    assert not [s for s in collector.spans if s.name.endswith(("/health", "/ready"))]
