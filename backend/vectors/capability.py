"""Vectors: search routes, the cached view of each collection's live embedding version, the
embedding gauges, and the relay consumer that sends changed records to be embedded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from functools import partial

from litestar import Litestar

from backend.capability import Basics, Capability
from backend.collections.rules import CompiledRules
from backend.collections.spec import CollectionRegistry
from backend.lib.background import running
from backend.vectors.consumer import make_embedding_consumer
from backend.vectors.metrics import refresh_gauges
from backend.vectors.queries import QueryEmbeddings
from backend.vectors.routes import vector_routers
from backend.vectors.versions import ActiveVersions


def vectors_capability(
    basics: Basics, registry: CollectionRegistry, rules: dict[str, CompiledRules]
) -> Capability:
    settings = basics.settings
    embedded = any(c.embed is not None for c in registry)

    @asynccontextmanager
    async def track_versions(app: Litestar) -> AsyncIterator[None]:
        # On the collections' read pool, opened before this.
        versions = ActiveVersions(app.state.reader, settings.vector_version_cache_seconds)
        app.state.embedding_versions = versions
        refresh = partial(refresh_gauges, registry, app.state.reader, versions, settings)
        async with running(refresh, "embedding-gauges") if embedded else nullcontext():
            yield

    return Capability(
        "vectors",
        routes=vector_routers(registry, rules, settings),
        lifespans=[track_versions],
        state={"query_embeddings": QueryEmbeddings(settings)},
        consumers=[make_embedding_consumer] if embedded else [],
    )
