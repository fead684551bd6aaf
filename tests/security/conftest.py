"""The attack tests (issue 18): real Postgres and Redis, requests as an attacker sends them.

They use the integration suite's fixtures (a signed-up user, SQL for setup the API has no
route for, admins and members)."""

from tests.e2e.conftest import inbox  # noqa: F401 - the mail the stack (tests/conftest.py) sent
from tests.integration.conftest import (  # noqa: F401 - fixtures, found by name
    add_member,
    admin,
    admin_tokens,
    make_admin,
    queued_mail,
    sign_up,
    sql,
)
