"""Query text to a vector for search, through the version's embedder, cached per process."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from backend.config import Settings
from backend.errors import UpstreamFailed
from backend.vectors.chunking import EmbedVersion
from backend.vectors.embedders import ProviderError, embedder_for, vector_literal


class QueryEmbeddings:
    """Query text → vector, per version, with a per-process LRU cache."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()

    async def vector(self, spec: EmbedVersion, text: str) -> str:
        key = (spec.version, text)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        embedder = embedder_for(spec.choice, self.settings)
        try:
            (vector,) = await asyncio.to_thread(embedder.embed, [text])
        except ProviderError as exc:
            raise UpstreamFailed(
                "The embedding provider could not embed the query; try again",
                code="embedding_failed",
            ) from exc
        literal = vector_literal(vector)
        if self.settings.vector_query_cache_size > 0:
            self._cache[key] = literal
            if len(self._cache) > self.settings.vector_query_cache_size:
                self._cache.popitem(last=False)
        return literal
