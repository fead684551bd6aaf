"""Every table module, imported once so the metadata (and Alembic autogenerate) sees them all."""

from backend.auth import models as auth_models
from backend.orgs import models as org_models

__all__ = ["auth_models", "org_models"]
