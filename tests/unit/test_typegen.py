"""Types written for clients from the collections (`litebase gen types`)."""

from __future__ import annotations

from typing import Any

from backend.app_collections.messages import messages
from backend.app_collections.notes import notes
from backend.app_collections.projects import projects, tasks
from backend.collections.spec import CollectionRegistry
from backend.collections.typegen import python, relations_of, typescript

REGISTRY = CollectionRegistry([messages, notes, projects, tasks])


def test_relations_are_the_fields_that_point_at_another_collection() -> None:
    # assignee points at users (no collection) and owner/org at users/orgs: not expandable.
    assert relations_of(tasks, REGISTRY) == {"project": "projects"}
    assert relations_of(notes, REGISTRY) == {}


def test_typescript_shapes_say_what_a_create_requires_and_an_update_allows() -> None:
    text = typescript(REGISTRY)
    tasks_block = text[text.index('"tasks": {') :]
    insert = tasks_block[tasks_block.index("Insert:") : tasks_block.index("Update:")]
    update = tasks_block[tasks_block.index("Update:") : tasks_block.index("Relations:")]
    assert '"project": string;' in insert and '"title": string;' in insert
    assert '"status"?: "todo" | "doing" | "done";' in insert
    assert '"assignee"?: string | null;' in insert
    assert '"id"' not in insert and '"owner"' not in update  # the server's own fields
    assert '"title"?: string;' in update
    assert 'Relations: { "project": "projects"; }' in tasks_block
    assert 'export type CollectionName = "messages" | "notes" | "projects" | "tasks";' in text


def test_python_typed_dicts_mark_the_required_fields() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(python(REGISTRY), "litebase_types.py", "exec", dont_inherit=True), namespace)
    assert namespace["TasksInsert"].__required_keys__ == {"project", "title"}
    assert namespace["TasksUpdate"].__required_keys__ == frozenset()
    assert "updated_at" in namespace["NotesRow"].__required_keys__
    assert namespace["RELATIONS"]["tasks"] == {"project": "projects"}
