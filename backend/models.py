"""Every table module, imported once so the metadata (and Alembic autogenerate) sees them all.

It imports every capability, so it lives at the top of the layers (backend/db stays below
them); only the migrations' env.py imports it."""

from backend.ai import models as ai_models
from backend.auth import models as auth_models
from backend.collections.spec import CollectionRegistry
from backend.files import models as file_models
from backend.jobs import models as job_models
from backend.webhooks import models as webhook_models

# Collection modules define their tables on import.
CollectionRegistry.discover()

__all__ = ["ai_models", "auth_models", "file_models", "job_models", "webhook_models"]
