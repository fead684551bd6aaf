"""Two-factor sign-in with an authenticator app (TOTP): the user's secret, sealed with a key
derived from SECRET_KEY, when it was turned on, and the last time step accepted (no replays).

Revision ID: 0012_totp
Revises: 0011_email_change
Create Date: 2026-12-02 02:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012_totp"
down_revision: str | None = "0011_email_change"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE users ADD COLUMN totp_secret varchar(300),"
        " ADD COLUMN totp_enabled_at timestamptz, ADD COLUMN totp_last_step bigint"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE users DROP COLUMN totp_last_step, DROP COLUMN totp_enabled_at,"
        " DROP COLUMN totp_secret"
    )
