"""Run Alembic programmatically, so `litebase migrate`, /ready and tests share one setup."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from backend.lib.urls import sync_database_url

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Passed as an attribute, not an ini option: URLs may contain '%' which configparser mangles.
    config.attributes["database_url"] = sync_database_url(database_url)
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revisions() -> frozenset[str]:
    """The revision ids a fully migrated database is at."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return frozenset(script.get_heads())
