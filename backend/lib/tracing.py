"""OpenTelemetry tracing: on when an OTLP endpoint is set, and then nothing but the API installed.

``start_tracing`` installs the SDK's tracer provider, exporting in batches over OTLP/HTTP
(protobuf), and the Celery instrumentation (a span per task published and run, the trace
context carried in the message headers). Without an endpoint it installs nothing and does not
import the SDK: OpenTelemetry's API then hands out non-recording spans, and the code here checks
``tracing_on()`` first so a hot path pays one global read (docs/tracing.md).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from litestar.plugins import InitPluginProtocol
    from opentelemetry.sdk.trace import TracerProvider

# The provider this process installed, if any (set once: OpenTelemetry allows one per process).
_provider: TracerProvider | None = None
_propagator = TraceContextTextMapPropagator()
# Routes probed every few seconds by load balancers and scrapers: a span each is noise.
UNTRACED_PATHS = ("/health", "/ready", "/metrics")
# A span may carry this many links (the SDK's default limit); more are dropped by the SDK.
MAX_LINKS = 128

AttributeValue = str | int | float | bool


def traces_url(endpoint: str) -> str:
    """The traces URL under an OTLP/HTTP base endpoint, as OTEL_EXPORTER_OTLP_ENDPOINT means it."""
    return endpoint.rstrip("/") + "/v1/traces"


def start_tracing(endpoint: str, service_name: str) -> bool:
    """Trace this process if ``endpoint`` is set; whether it is traced. Calling again is a
    no-op (the first call's service name stays)."""
    global _provider
    if not endpoint:
        return False
    if _provider is not None:
        return True
    from celery.signals import worker_process_shutdown
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
    trace.set_tracer_provider(provider)
    _provider = provider
    CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    # A prefork child ends with os._exit, past atexit: send what it has buffered first.
    worker_process_shutdown.connect(flush_spans, weak=False)
    return True


def tracing_on() -> bool:
    return _provider is not None


def flush_spans(**_: Any) -> None:
    """Export the spans still buffered (a process about to end)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis=5000)


def litestar_plugins() -> list[InitPluginProtocol]:
    """Litestar's OpenTelemetry plugin (a server span per request) if tracing is on, else none.
    The ASGI ``receive``/``send`` spans are left out: a streamed answer would make hundreds."""
    if _provider is None:
        return []
    from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin

    config = OpenTelemetryConfig(
        tracer_provider=_provider,
        exclude=[f"^{path}$" for path in UNTRACED_PATHS],
        exclude_spans=["receive", "send"],
    )
    return [OpenTelemetryPlugin(config)]


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, if tracing is on and there is one."""
    if _provider is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def _context_of(traceparent: str) -> Context | None:
    context = _propagator.extract({"traceparent": traceparent})
    span_context = trace.get_current_span(context).get_span_context()
    return context if span_context.is_valid else None


@contextlib.contextmanager
def span_continuing(
    name: str,
    traceparents: Iterable[str | None],
    attributes: Mapping[str, AttributeValue] | None = None,
) -> Iterator[None]:
    """A span for work done on behalf of earlier work elsewhere, known by its ``traceparent``s
    (a batch of outbox events, each carrying its writer's). One trace among them: the span is
    its child, so the trace goes on. Several: a new trace, linked to each (a span has one
    parent). None, or tracing off: a new trace, or nothing."""
    if _provider is None:
        yield
        return
    contexts = [c for c in (_context_of(t) for t in dict.fromkeys(traceparents) if t) if c]
    traces = {trace.get_current_span(c).get_span_context().trace_id for c in contexts}
    parent = contexts[0] if len(traces) == 1 else None
    links = (
        []
        if parent is not None
        else [Link(trace.get_current_span(c).get_span_context()) for c in contexts[:MAX_LINKS]]
    )
    tracer = trace.get_tracer(__name__)
    # A new root when there is no single parent, whatever span happens to be current.
    with tracer.start_as_current_span(
        name, context=parent or Context(), links=links, attributes=attributes
    ):
        yield


@contextlib.contextmanager
def client_span(name: str, attributes: Mapping[str, AttributeValue]) -> Iterator[None]:
    """A client span around a call to another service (a model provider), if tracing is on;
    an exception leaving it marks it failed."""
    if _provider is None:
        yield
        return
    tracer = trace.get_tracer(__name__)
    with tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes):
        yield
