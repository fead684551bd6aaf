"""Embedding progress as Prometheus gauges, refreshed by each API process in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Gauge

from backend.collections.reads import Reader
from backend.collections.spec import CollectionRegistry
from backend.config import Settings
from backend.vectors.status import embedding_status
from backend.vectors.versions import ActiveVersions

log = logging.getLogger(__name__)

EMBEDDINGS = Gauge(
    "litebase_embeddings_records",
    "Records of an embedded collection by embedding state (active version)",
    ["collection", "state"],
)


async def refresh_gauges(
    registry: CollectionRegistry,
    reader: Reader,
    versions: ActiveVersions,
    settings: Settings,
    stop: asyncio.Event,
) -> None:
    embedded = [c for c in registry if c.embed is not None]
    while not stop.is_set():
        for collection in embedded:
            try:
                report = await embedding_status(reader, versions, settings, collection)
            except Exception as exc:  # the database may be down: /ready says so, keep trying
                log.debug("embedding gauges for %s not refreshed: %s", collection.name, exc)
                continue
            for state in ("pending", "failed", "done"):
                EMBEDDINGS.labels(collection.name, state).set(report[state])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.vector_status_refresh_seconds)
