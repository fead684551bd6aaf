"""Files: the storage every file route and upload shares, and the relay consumer that sends
the files records let go of to the workers."""

from __future__ import annotations

from backend.capability import Basics, Capability
from backend.collections.rules import CompiledRules
from backend.collections.spec import CollectionRegistry
from backend.files.cleanup import make_cleanup_consumer
from backend.files.resumable import ResumableUploads
from backend.files.routes import file_routers
from backend.files.staging import open_staging
from backend.files.storage import open_storage
from backend.files.uploads import Uploads


def files_capability(
    basics: Basics, registry: CollectionRegistry, rules: dict[str, CompiledRules]
) -> Capability:
    storage = open_storage(basics.settings)
    uploads = Uploads(storage, basics.settings, rules)
    resumable = ResumableUploads(
        uploads, open_staging(basics.settings, storage), registry, basics.settings
    )
    return Capability(
        "files",
        routes=file_routers(registry, rules, basics.settings),
        state={"storage": storage, "record_uploads": uploads, "resumable_uploads": resumable},
        consumers=[make_cleanup_consumer],
    )
