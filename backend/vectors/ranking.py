"""Turning ranked chunk rows into results: one item per record, and rank fusion for hybrid."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from backend.collections.reading import Row

RRF_K = 60


@dataclass(frozen=True)
class Hit:
    row: Row
    score: float
    chunk: int
    content: str
    file: str | None = None  # the document the chunk is from (None: the text fields)
    page: int | None = None  # its page, from 1 (PDFs)


def best_per_record(rows: Sequence[Row | asyncpg.Record], k: int, score: Any) -> list[Hit]:
    hits: list[Hit] = []
    seen: set[Any] = set()
    for row in rows:
        if row["id"] in seen:
            continue
        seen.add(row["id"])
        record = {name: value for name, value in row.items() if not name.startswith("_lb_")}
        hits.append(
            Hit(
                record,
                score(row),
                row["_lb_chunk"],
                row["_lb_content"],
                row["_lb_file"] or None,
                row["_lb_page"],
            )
        )
        if len(hits) == k:
            break
    return hits


def fuse(vector: list[Hit], text: list[Hit], k: int) -> list[Hit]:
    """Reciprocal rank fusion: each list adds 1 / (60 + rank) to a record's score."""
    scores: dict[Any, float] = {}
    best: dict[Any, Hit] = {}
    for hits in (vector, text):
        for rank, hit in enumerate(hits, start=1):
            key = hit.row["id"]
            scores[key] = scores.get(key, 0.0) + 1.0 / (RRF_K + rank)
            best.setdefault(key, hit)
    ordered = sorted(scores, key=lambda key: scores[key], reverse=True)[:k]
    return [dataclasses.replace(best[key], score=scores[key]) for key in ordered]
