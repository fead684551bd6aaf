"""`litebase new collection` in a copy of the project: the written code lints, migrates, agrees
with its model, and its own test passes — with no other edit."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, run_python

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    copy = tmp_path / "project"
    copy.mkdir()
    for part in ("backend", "tests", "pyproject.toml"):
        source = ROOT / part
        if source.is_dir():
            shutil.copytree(source, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, copy / part)
    return copy


def test_a_new_collection_works_after_migrate(project: Path):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    made = run_python(
        "backend.cli", "new", "collection", "gadgets",
        "--field", "name:str", "--field", "count:int", "--field", "due:datetime?",
        "--field", "labels:tags", "--root", str(project),
        env=env,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    module = project / "backend" / "app_collections" / "gadgets.py"
    test = project / "tests" / "integration" / "test_collection_gadgets.py"
    assert module.exists() and test.exists()
    assert len(list((project / "backend/db/migrations/versions").glob("*_gadgets.py"))) == 1

    lint = run_python("ruff", "check", str(module), str(test), env=dict(os.environ))
    assert lint.returncode == 0, lint.stdout

    # In the copy: its own test, plus the migrations test (models and migrations agree).
    inner = run_python(
        "pytest", "-q", "-p", "no:cacheprovider",
        "tests/integration/test_collection_gadgets.py", "tests/integration/test_migrations.py",
        env={**env, "PYTHONPATH": str(project)}, timeout=240, cwd=project,
    )  # fmt: skip
    assert inner.returncode == 0, inner.stdout[-3000:]
    assert "4 passed" in inner.stdout

    again = run_python("backend.cli", "new", "collection", "gadgets", "--field", "x:int",
                       "--root", str(project), env=env)  # fmt: skip
    assert again.returncode != 0
    assert "already exists" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad-Name", "--field", "a:int"], "collection name"),
        (["things"], "at least one --field"),
        (["things", "--field", "a:decimal"], "type 'decimal'"),
        (["things", "--field", "owner:str"], "field name 'owner'"),
    ],
)
def test_bad_names_and_types_are_refused(project: Path, args, message):
    result = run_python(
        "backend.cli", "new", "collection", *args, "--root", str(project), env=dict(os.environ)
    )
    assert result.returncode != 0
    assert message in result.stderr
