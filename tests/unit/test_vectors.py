"""Vector pieces without I/O: embedders, batching, chunking, versions, fusion, settings."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from backend.app_collections.notes import Note
from backend.collections.spec import Collection, CollectionRegistry, Embed
from backend.config import SettingsError, settings_from_env
from backend.events.relay import OutboxEvent
from backend.vectors.chunking import EmbedVersion, chunk, source_text, text_hash
from backend.vectors.consumer import embedding_batches
from backend.vectors.embedders import (
    OPENAI_MAX_INPUTS,
    OPENAI_MAX_TOKENS,
    HashEmbedder,
    ModelChoice,
    openai_batches,
    vector_literal,
)
from backend.vectors.ranking import Hit, fuse
from workers.tasks.vectors import backoff


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_the_hash_embedder_is_deterministic_unit_length_and_lexical():
    embedder = HashEmbedder(dimensions=384)
    first, again, near, far, empty = embedder.embed(
        [
            "the quick brown fox",
            "the quick brown fox",
            "a quick brown dog",
            "volcanic basalt",
            "",
        ]
    )
    assert first == again and len(first) == 384
    for vector in (first, near, far, empty):
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-9)
    assert _cosine(first, near) > _cosine(first, far)
    assert _cosine(first, first) == pytest.approx(1.0)


def test_openai_batches_stay_within_inputs_and_tokens_per_request():
    many = openai_batches(["word"] * 5000)
    assert [len(b) for b in many] == [OPENAI_MAX_INPUTS, OPENAI_MAX_INPUTS, 5000 - 2 * 2048]
    big = "x" * 100_000
    batches = openai_batches([big] * 7)
    assert all(sum(len(t) for t in batch) <= OPENAI_MAX_TOKENS for batch in batches)
    assert sum(len(batch) for batch in batches) == 7
    assert openai_batches([]) == []


def test_chunks_respect_the_size_share_an_overlap_and_skip_empty_text():
    text = " ".join(f"word{i}" for i in range(400))
    pieces = chunk(text, 200, 40)
    assert len(pieces) > 1 and all(len(piece) <= 200 for piece in pieces)
    assert pieces[0].split()[-1] in pieces[1]  # neighbours share words
    assert chunk("   ", 200, 40) == [] and chunk("short", 200, 40) == ["short"]
    assert source_text({"title": "T", "body": None}, ["title", "body"]) == "T\n\n"


def test_a_version_is_named_by_everything_that_decides_the_vectors():
    base = EmbedVersion.of(ModelChoice("hash", "hash-v1", 384), ["title", "body"], 800, 100)
    assert base.version == EmbedVersion.of(base.choice, ["title", "body"], 800, 100).version
    others = [
        EmbedVersion.of(ModelChoice("hash", "hash-v1", 256), ["title", "body"], 800, 100),
        EmbedVersion.of(ModelChoice("openai", "hash-v1", 384), ["title", "body"], 800, 100),
        EmbedVersion.of(base.choice, ["body"], 800, 100),
        EmbedVersion.of(base.choice, ["title", "body"], 500, 100),
        EmbedVersion.of(base.choice, ["title", "body"], 800, 50),
    ]
    assert len({base.version, *(o.version for o in others)}) == 6
    assert len(base.version) == 12 and base.model_label == "hash:hash-v1@384"
    assert text_hash("a") != text_hash("b")


def test_vector_literals_are_pgvector_text():
    assert vector_literal([0.5, -1.0, 1e-9]) == "[0.5,-1,1e-09]"


def _event(collection: str, record_id: str, op: str = "update") -> OutboxEvent:
    return OutboxEvent(
        id=1,
        collection=collection,
        op=op,
        record_id=record_id,
        record=None,
        old=None,
        created_at=datetime.now(UTC),
    )


def test_changes_become_batches_of_distinct_ids_for_embedded_collections_only():
    registry = CollectionRegistry.discover()
    events = [_event("notes", f"id{i % 7}") for i in range(20)] + [_event("projects", "p1")]
    batches = embedding_batches(registry, events, 3)
    assert batches == [
        ("notes", ["id0", "id1", "id2"]),
        ("notes", ["id3", "id4", "id5"]),
        ("notes", ["id6"]),
    ]


def test_reciprocal_rank_fusion_rewards_agreement():
    def hit(name: str) -> Hit:
        return Hit({"id": name}, 0.0, 0, name)

    fused = fuse([hit("a"), hit("b"), hit("c")], [hit("b"), hit("d"), hit("c")], 3)
    assert [h.row["id"] for h in fused] == ["b", "c", "a"]
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)


def test_backoff_grows_and_is_capped_with_full_jitter():
    for retries in range(10):
        value = backoff(retries, 2.0, 30.0)
        assert 0 <= value <= min(30.0, 2.0 * 2**retries)


def test_embedding_settings_are_checked():
    assert settings_from_env({}).embedding_provider == "hash"
    with pytest.raises(SettingsError, match="EMBEDDING_PROVIDER"):
        settings_from_env({"EMBEDDING_PROVIDER": "magic"})
    with pytest.raises(SettingsError, match="VECTOR_INDEX_BUILD_MEMORY"):
        settings_from_env({"VECTOR_INDEX_BUILD_MEMORY": "1GB; DROP TABLE notes"})
    with pytest.raises(SettingsError, match="VECTOR_HNSW_M"):
        settings_from_env({"VECTOR_HNSW_M": "1"})
    with pytest.raises(SettingsError, match="VECTOR_HNSW_EF_CONSTRUCTION"):
        settings_from_env({"VECTOR_HNSW_M": "16", "VECTOR_HNSW_EF_CONSTRUCTION": "20"})
    with pytest.raises(SettingsError, match="VECTOR_HNSW_EF_CONSTRUCTION"):
        settings_from_env({"VECTOR_HNSW_EF_CONSTRUCTION": "1001"})
    with pytest.raises(SettingsError, match="VECTOR_SEARCH_MAX_K"):
        settings_from_env({"VECTOR_SEARCH_MAX_K": "0"})
    with pytest.raises(SettingsError, match="EMBEDDING_BATCH_RECORDS"):
        settings_from_env({"EMBEDDING_BATCH_RECORDS": "0"})


def test_embed_must_name_text_fields_and_a_sane_overlap():
    with pytest.raises(ValueError, match="text fields"):
        Collection(model=Note, embed=Embed(fields=["tags"]))  # a list of text, not text
    with pytest.raises(ValueError, match="text fields"):
        Collection(model=Note, embed=Embed(fields=["colour"]))
    with pytest.raises(ValueError, match="chunk_overlap"):
        Collection(model=Note, embed=Embed(fields=["body"], chunk_size=100, chunk_overlap=100))
    assert Collection(model=Note, embed=Embed(fields=["body"])).embed is not None
