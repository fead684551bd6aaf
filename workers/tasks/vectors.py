"""vectors.embed, vectors.reindex and vectors.retry_failed: keep embedded collections in sync.

The relay sends ``vectors.embed`` with the ids of records that changed (in batches of
EMBEDDING_BATCH_RECORDS). Provider errors that may pass (429, 5xx, timeouts) retry the task
with exponential backoff and full jitter, EMBEDDING_MAX_RETRIES times; then each record of the
batch is marked failed and logged in ``embedding_failures``. A collection that embeds files
(``Embed(files=[...])``) has its records' documents read from storage and embedded in the same
task (backend/vectors/documents.py). Beat's ``vectors.retry_failed``
sends failed records through ``vectors.embed`` again once their backoff is due (doubling, at
most EMBEDDING_SWEEP_MAX_RETRIES times until their text changes), so an outage heals itself.
"""

from __future__ import annotations

import logging
import time
from functools import cache
from typing import Any

import psycopg
from celery import shared_task
from celery.signals import worker_ready
from celery.utils.time import get_exponential_backoff_interval
from sqlalchemy.exc import DBAPIError

from backend.collections.spec import Collection, CollectionRegistry
from backend.config import Settings
from backend.files.models import object_key
from backend.files.storage import Storage, open_storage
from backend.vectors import EMBED_TASK, REINDEX_TASK, RETRY_FAILED_TASK
from backend.vectors.documents import ReadFile, embed_files, record_file_failures
from backend.vectors.embedders import ProviderError
from backend.vectors.failures import claim_due_failures, record_failures
from backend.vectors.sync import embed_records, maybe_activate
from backend.vectors.sync import record_ids as batches_of_ids
from backend.vectors.versions import ensure_versions
from workers.celery_app import LitebaseCelery
from workers.database import connection

log = logging.getLogger(__name__)


@cache
def _registry() -> CollectionRegistry:
    return CollectionRegistry.discover()


def _embedded(name: str) -> Collection | None:
    collection = _registry().get(name)
    return collection if collection is not None and collection.embed is not None else None


@cache
def _storage(settings: Settings) -> Storage:
    return open_storage(settings)


def file_reader(settings: Settings) -> ReadFile:
    """Reads a record's file from storage as a stream, for its text to be embedded."""
    storage = _storage(settings)
    return lambda collection, record_id, name: storage.iter_sync(
        object_key(collection, record_id, name)
    )


def _app(task: Any) -> LitebaseCelery:
    app = task.app
    assert isinstance(app, LitebaseCelery) and app.settings.database_url
    return app


def send_reindex(app: LitebaseCelery, collection: str) -> None:
    app.send_task(REINDEX_TASK, args=[collection])


def backoff(retries: int, base: float, maximum: float) -> float:
    """Celery's exponential backoff with full jitter: uniform in [0, min(maximum, base *
    2^retries)]. Counted in milliseconds: Celery's works in whole units, the settings are
    seconds that may be fractions."""
    millis = get_exponential_backoff_interval(
        round(base * 1000), retries, round(maximum * 1000), full_jitter=True
    )
    return millis / 1000


@shared_task(name=EMBED_TASK, bind=True, max_retries=None)
def embed(self: Any, collection_name: str, record_ids: list[str]) -> dict[str, int]:
    app = _app(self)
    settings = app.settings
    collection = _embedded(collection_name)
    if collection is None:
        log.warning("vectors.embed for %r, which does not embed; ignored", collection_name)
        return {}
    embedded: dict[str, int] = {}
    assert settings.database_url is not None
    started = time.perf_counter()
    timings: dict[str, float] = {}
    with connection(settings) as conn:
        live, _ = ensure_versions(conn, collection, settings, adopt=False)
        timings["connect"] = time.perf_counter() - started
        for version in live:
            try:
                embedded[version.version] = embed_records(
                    conn, collection, version, record_ids, settings, timings=timings
                )
                if version.spec.files:
                    mark = time.perf_counter()
                    embedded[version.version] += embed_files(
                        conn, collection, version, record_ids, settings, file_reader(settings)
                    )
                    timings["files"] = timings.get("files", 0.0) + time.perf_counter() - mark
            except ProviderError as exc:
                retries = self.request.retries or 0
                if exc.retryable and retries < settings.embedding_max_retries:
                    countdown = backoff(
                        retries,
                        settings.embedding_retry_backoff_seconds,
                        settings.embedding_retry_backoff_max_seconds,
                    )
                    log.warning(
                        "embedding %d records of %s failed (%s); retry %d in %ss",
                        len(record_ids),
                        collection.name,
                        exc,
                        retries + 1,
                        countdown,
                    )
                    raise self.retry(countdown=countdown, exc=exc) from exc
                log.error("embedding %s failed for good: %s", collection.name, exc)
                record_failures(
                    conn, collection, version, record_ids, str(exc), retries + 1, settings
                )
                record_file_failures(conn, collection, version, record_ids, str(exc))
        mark = time.perf_counter()
        maybe_activate(conn, collection, settings)
        timings["activate"] = time.perf_counter() - mark
    if log.isEnabledFor(logging.DEBUG):  # where a batch's time goes (docs/vectors.md)
        log.debug(
            "embedded %d records of %s in %.1f ms: %s",
            len(record_ids),
            collection.name,
            (time.perf_counter() - started) * 1000,
            ", ".join(f"{phase} {seconds * 1000:.1f}" for phase, seconds in timings.items()),
        )
    return embedded


@shared_task(name=REINDEX_TASK, bind=True)
def reindex(self: Any, collection_name: str) -> int:
    """Send every record of the collection through vectors.embed; returns how many."""
    app = _app(self)
    settings = app.settings
    collection = _embedded(collection_name)
    if collection is None:
        return 0
    assert settings.database_url is not None
    sent = 0
    with connection(settings) as conn:
        ensure_versions(conn, collection, settings, adopt=False)
        for ids in batches_of_ids(conn, collection, settings.embedding_batch_records):
            app.send_task(EMBED_TASK, args=[collection.name, ids])
            sent += len(ids)
        if sent == 0:
            maybe_activate(conn, collection, settings)
    return sent


@shared_task(name=RETRY_FAILED_TASK, bind=True)
def retry_failed(self: Any) -> int:
    """Send the failed records whose retry is due through vectors.embed again (beat, every
    EMBEDDING_SWEEP_INTERVAL_SECONDS); returns how many. Claimed before they are sent, so a
    broker that refuses leaves them for a later sweep, and a second sweep sends none twice."""
    app = _app(self)
    settings = app.settings
    names = [collection.name for collection in _registry() if collection.embed is not None]
    if not names or settings.embedding_sweep_max_retries == 0:
        return 0
    assert settings.database_url is not None
    with connection(settings) as conn:
        due = claim_due_failures(conn, names, settings)
    size = settings.embedding_batch_records
    for name, ids in due.items():
        log.info("sending %d failed records of %s to be embedded again", len(ids), name)
        for start in range(0, len(ids), size):
            app.send_task(EMBED_TASK, args=[name, ids[start : start + size]])
    return sum(len(ids) for ids in due.values())


@worker_ready.connect
def start_versions(sender: Any = None, **_: Any) -> None:
    """At worker start: make the settings' embedding version live for each embedded collection,
    and start re-embedding in the background if the settings changed (search keeps serving the
    old vectors until the new ones are complete)."""
    app = getattr(sender, "app", None)
    if not isinstance(app, LitebaseCelery) or not app.settings.database_url:
        return
    try:
        with connection(app.settings) as conn:
            for collection in _registry():
                if collection.embed is None:
                    continue
                started = ensure_versions(conn, collection, app.settings)[1]
                if started:
                    log.info("embedding settings of %s changed: re-embedding", collection.name)
                    send_reindex(app, collection.name)
    except (psycopg.Error, DBAPIError) as exc:  # the tasks ensure versions too; a worker starts
        log.warning("could not check embedding versions at start: %s", exc)
