"""A deleted user's, org's or API key's budget override goes with it, by trigger (issue 19).

ai_budgets names its subject by kind and id, so it cannot have foreign keys to three tables;
auth and orgs deleted overrides by importing the gateway's model, an import back up the
layers. The database now does it, also for deletions made in SQL (an org deleted cascades its
keys' overrides too).

Revision ID: 0015_budget_override_cleanup
Revises: 0014_api_key_scopes
Create Date: 2026-12-06 00:05:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015_budget_override_cleanup"
down_revision: str | None = "0014_api_key_scopes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SUBJECTS = {"users": "user", "orgs": "org", "auth_api_keys": "key"}


def upgrade() -> None:
    op.execute(
        "CREATE FUNCTION litebase_drop_budget_override() RETURNS trigger"
        " LANGUAGE plpgsql AS $$ BEGIN"
        " DELETE FROM ai_budgets WHERE subject_kind = TG_ARGV[0] AND subject_id = OLD.id;"
        " RETURN OLD; END $$"
    )
    for table, kind in SUBJECTS.items():
        op.execute(
            f"CREATE TRIGGER {table}_drop_budget_override AFTER DELETE ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION litebase_drop_budget_override('{kind}')"
        )
    # Overrides whose subject is gone already (keys deleted with their user, before this).
    for table, kind in SUBJECTS.items():
        op.execute(
            f"DELETE FROM ai_budgets b WHERE b.subject_kind = '{kind}'"
            f" AND NOT EXISTS (SELECT 1 FROM {table} t WHERE t.id = b.subject_id)"
        )


def downgrade() -> None:
    for table in SUBJECTS:
        op.execute(f"DROP TRIGGER {table}_drop_budget_override ON {table}")
    op.execute("DROP FUNCTION litebase_drop_budget_override()")
