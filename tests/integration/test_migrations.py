"""Migrations go up to head and back down to base on a fresh database."""

import psycopg

from backend.db.migrate import downgrade, head_revisions, upgrade
from backend.lib.urls import libpq_database_url


def _tables_and_functions(url: str) -> tuple[set[str], set[str], str | None]:
    with psycopg.connect(libpq_database_url(url)) as conn:
        tables = {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        functions = {
            r[0] for r in conn.execute("SELECT proname FROM pg_proc WHERE proname LIKE 'litebase%'")
        }
        vector = conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
        ).fetchone()
    return tables, functions, vector[0] if vector else None


def test_upgrade_creates_outbox_trigger_function_and_vector(services):
    with services.fresh_database(migrated=False) as url:
        upgrade(url)
        tables, functions, vector = _tables_and_functions(url)
        assert {"outbox", "alembic_version"} <= tables
        assert "litebase_outbox_capture" in functions
        assert vector is not None
        with psycopg.connect(libpq_database_url(url)) as conn:
            versions = {r[0] for r in conn.execute("SELECT version_num FROM alembic_version")}
        assert versions == head_revisions()


def test_downgrade_to_base_and_up_again(services):
    with services.fresh_database(migrated=False) as url:
        upgrade(url)
        downgrade(url, "base")
        tables, functions, _ = _tables_and_functions(url)
        assert "outbox" not in tables
        assert "litebase_outbox_capture" not in functions
        upgrade(url)
        tables, functions, _ = _tables_and_functions(url)
        assert "outbox" in tables
        assert "litebase_outbox_capture" in functions


def test_the_models_and_the_migrations_agree(database_url):
    """`alembic check`: autogenerate finds nothing the migrations have not already done."""
    from alembic import command

    from backend.db.migrate import alembic_config

    command.check(alembic_config(database_url))
