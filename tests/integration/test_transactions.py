"""One owner of the transaction (decision 0011): a request's work is committed once, after its
handler returns; what waits for the commit runs after it, and nothing of a refused request is
kept unless its error says the refusal is itself a change."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from litestar import post
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from backend.app import create_app
from backend.db.transactions import after_commit
from backend.errors import Conflict

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def app_client(settings, clock, sql):
    sql("CREATE TABLE tx_probe (label text NOT NULL)")
    seen: list[Any] = []

    async def _write(db: AsyncSession, label: str) -> None:
        await db.execute(text("INSERT INTO tx_probe VALUES (:label)"), {"label": label})

        async def effect() -> None:  # what another connection sees when it runs
            seen.append((label, sql("SELECT count(*) FROM tx_probe WHERE label = %s", label)))

        after_commit(db, effect)

    @post("/probe/ok", status_code=201)
    async def ok(db_session: AsyncSession) -> None:
        await _write(db_session, "ok")

    @post("/probe/refused")
    async def refused(db_session: AsyncSession) -> None:
        await _write(db_session, "refused")
        raise Conflict("refused after writing", code="refused")

    @post("/probe/kept")
    async def kept(db_session: AsyncSession) -> None:
        await _write(db_session, "kept")
        raise Conflict("refused, and the refusal is a change", code="kept", keep_changes=True)

    @post("/probe/crashed")
    async def crashed(db_session: AsyncSession) -> None:
        await _write(db_session, "crashed")
        raise RuntimeError("a bug")

    app = create_app(settings, clock=clock, route_handlers=[ok, refused, kept, crashed])
    async with AsyncTestClient(app) as client:
        yield client, seen


async def test_a_request_commits_once_then_runs_what_waited_for_the_commit(app_client, sql):
    client, seen = app_client
    assert (await client.post("/probe/ok")).status_code == 201
    assert seen == [("ok", [(1,)])]  # the effect ran after the commit: another connection saw it


async def test_a_refused_request_keeps_nothing_and_runs_no_effect(app_client, sql):
    client, seen = app_client
    response = await client.post("/probe/refused")
    assert response.status_code == 409 and response.json()["code"] == "refused"
    crashed = await client.post("/probe/crashed")
    assert crashed.status_code == 500
    assert sql("SELECT label FROM tx_probe") == []
    assert seen == []


async def test_an_error_that_keeps_its_changes_commits_them_and_still_refuses(app_client, sql):
    client, seen = app_client
    response = await client.post("/probe/kept")
    assert response.status_code == 409 and response.json()["code"] == "kept"
    assert sql("SELECT label FROM tx_probe") == [("kept",)]
    assert seen == [("kept", [(1,)])]


def _owner_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"commit", "rollback"}
        ):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.func.attr}()")
    return found


def test_only_the_owners_commit():
    """Services never commit or roll back; backend/db/transactions.py does it for every owner.
    The migration runner and the workers' psycopg tasks own their connections themselves."""
    owners = {ROOT / "backend/db/transactions.py"}
    calls = [
        call
        for path in sorted((ROOT / "backend").rglob("*.py"))
        if path not in owners and "migrations" not in path.parts
        for call in _owner_calls(path)
    ]
    assert calls == []
