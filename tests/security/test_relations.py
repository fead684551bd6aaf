"""Issue 18.16 and 18.7 (assignee): a relation written on create or update must point at a
record the caller may view, and a relation to a user at a member of the record's org. Before,
a task could be filed under another org's project (its id then showed in the other org's
realtime feed, and 201 against 422 told which ids exist) and assigned to any user id."""

from __future__ import annotations

import uuid
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import finished_job, signed_up
from tests.integration.conftest import bearer, in_org


async def _member_with_project(client, sign_up, name: str) -> tuple[dict[str, str], str, str]:
    """A new user in a new org of their own, acting in it; its project's id; the org's id."""
    tokens = await sign_up()
    org = await client.post("/orgs", json={"name": name}, headers=bearer(tokens["access_token"]))
    assert org.status_code == 201, org.text
    headers = bearer((await in_org(client, tokens, org.json()["id"]))["access_token"])
    project = await client.post(
        "/collections/projects/records", json={"name": f"{name} plans"}, headers=headers
    )
    assert project.status_code == 201, project.text
    return headers, project.json()["id"], org.json()["id"]


def _names_field(response, field: str) -> None:
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == [field]


async def test_a_task_cannot_be_filed_under_another_orgs_project(client, sign_up):
    mine, my_project, _ = await _member_with_project(client, sign_up, "Acme")
    _, their_project, _ = await _member_with_project(client, sign_up, "Globex")

    theirs = await client.post(
        "/collections/tasks/records",
        json={"project": their_project, "title": "spy"},
        headers=mine,
    )
    _names_field(theirs, "project")
    # A project that does not exist answers the same: no oracle for other orgs' ids.
    missing = await client.post(
        "/collections/tasks/records",
        json={"project": str(uuid.uuid4()), "title": "spy"},
        headers=mine,
    )
    _names_field(missing, "project")
    assert missing.json()["detail"] == theirs.json()["detail"]

    task = await client.post(
        "/collections/tasks/records", json={"project": my_project, "title": "fine"}, headers=mine
    )
    assert task.status_code == 201, task.text
    moved = await client.patch(
        f"/collections/tasks/records/{task.json()['id']}",
        json={"project": their_project},
        headers=mine,
    )
    _names_field(moved, "project")
    batch = await client.post(
        "/collections/tasks/records:batch",
        json={"operations": [{"op": "create", "data": {"project": their_project, "title": "x"}}]},
        headers=mine,
    )
    _names_field(batch, "operations[0].project")


async def test_a_task_is_assigned_only_to_a_member_of_its_org(client, sign_up, add_member):
    mine, project, org = await _member_with_project(client, sign_up, "Acme")
    stranger = await sign_up()
    colleague = await sign_up()
    add_member(org, colleague["user"]["id"])

    to_stranger = await client.post(
        "/collections/tasks/records",
        json={"project": project, "title": "t", "assignee": stranger["user"]["id"]},
        headers=mine,
    )
    _names_field(to_stranger, "assignee")
    task = await client.post(
        "/collections/tasks/records",
        json={"project": project, "title": "t", "assignee": colleague["user"]["id"]},
        headers=mine,
    )
    assert task.status_code == 201, task.text
    reassigned = await client.patch(
        f"/collections/tasks/records/{task.json()['id']}",
        json={"assignee": stranger["user"]["id"]},
        headers=mine,
    )
    _names_field(reassigned, "assignee")
    unassigned = await client.patch(
        f"/collections/tasks/records/{task.json()['id']}", json={"assignee": None}, headers=mine
    )
    assert unassigned.status_code == 200, unassigned.text


async def test_admins_may_point_relations_anywhere(client, sign_up, admin):
    _, project, _ = await _member_with_project(client, sign_up, "Acme")
    task = await client.post(
        "/collections/tasks/records", json={"project": project, "title": "ops"}, headers=admin
    )
    assert task.status_code == 201, task.text


def _stack_sign_up(stack):
    """A ``sign_up`` (as the integration fixture's) against the running stack."""

    async def _sign_up() -> dict[str, Any]:
        async with aclosing(await signed_up(stack)) as client:
            return client.tokens  # type: ignore[attr-defined,no-any-return]

    return _sign_up


@pytest.mark.xdist_group("e2e")
async def test_an_import_cannot_file_rows_under_another_orgs_project(stack):
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as api:
        mine, my_project, _ = await _member_with_project(api, _stack_sign_up(stack), "Acme")
        _, their_project, _ = await _member_with_project(api, _stack_sign_up(stack), "Globex")
        data = "\n".join(
            f'{{"project": "{project}", "title": "row {n}"}}'
            for n, project in enumerate([my_project, their_project])
        )
        job = await api.post(
            "/jobs",
            json={
                "type": "import_records",
                "input": {"collection": "tasks", "format": "jsonl", "data": data},
            },
            headers=mine,
        )
        assert job.status_code == 202, job.text
        api.headers.update(mine)
        done = await finished_job(api, job.json()["id"])
        assert done["status"] == "succeeded", done
        assert done["result"]["inserted"] == 1
        assert [e["row"] for e in done["result"]["errors"]] == [1]
        assert "project" in done["result"]["errors"][0]["message"]
