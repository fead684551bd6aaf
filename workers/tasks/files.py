"""files.delete and files.sweep: remove the files records let go of (backend/files/cleanup.py).

The relay sends ``files.delete`` for each committed change that dropped files (a deleted
record, an update that removed names); beat runs ``files.sweep`` every
FILES_SWEEP_INTERVAL_SECONDS for the uploads no record took and any deletion that was lost.
Both are safe to run twice.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

from celery import shared_task

from backend.collections.spec import CollectionRegistry
from backend.config import Settings
from backend.files import DELETE_TASK, SWEEP_TASK
from backend.files.cleanup import forget_files, sweep
from backend.files.storage import Storage, open_storage
from workers.celery_app import LitebaseCelery
from workers.database import connection

log = logging.getLogger(__name__)


@cache
def _registry() -> CollectionRegistry:
    return CollectionRegistry.discover()


@cache
def _storage(settings: Settings) -> Storage:
    return open_storage(settings)


def _app(task: Any) -> LitebaseCelery:
    app = task.app
    assert isinstance(app, LitebaseCelery) and app.settings.database_url
    return app


@shared_task(name=DELETE_TASK, bind=True, max_retries=5, default_retry_delay=30)
def delete(self: Any, collection_name: str, record_id: str, names: list[str]) -> int:
    """Delete the files ``names`` of a record that let go of them; how many went."""
    app = _app(self)
    collection = _registry().get(collection_name)
    if collection is None or not collection.file_fields:
        log.warning("files.delete for %r, which has no file fields; ignored", collection_name)
        return 0
    try:
        with connection(app.settings) as conn:
            return forget_files(conn, _storage(app.settings), collection, record_id, names)
    except OSError as exc:  # storage unreachable: later (the sweeper, at the latest)
        raise self.retry(exc=exc) from exc


@shared_task(name=SWEEP_TASK, bind=True)
def sweep_files(self: Any) -> int:
    """One pass of the sweeper; how many files it removed."""
    app = _app(self)
    with connection(app.settings) as conn:
        return sweep(conn, _storage(app.settings), _registry(), app.settings)
