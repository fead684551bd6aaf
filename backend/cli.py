"""The `litebase` command: dev, api, migrate, worker, beat, create-admin, reindex; and the tools of
backend/cli_tools.py (prompts, mail, gen, new)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from backend.cli_tools import cli_settings as _settings
from backend.cli_tools import gen, mail, new, prompts
from backend.config import Settings, SettingsError


def _serving_settings(command: str) -> Settings:
    """Settings for a process that serves or runs work (api, worker, beat): unless
    LITEBASE_ENV says dev or test outright, the SECRET_KEY must be real. Settings default to
    dev, so a server started without LITEBASE_ENV would otherwise sign with the published
    dev key, and anyone could forge an admin's token."""
    settings = _settings()
    if os.environ.get("LITEBASE_ENV", "") not in ("dev", "test"):
        try:
            settings.check_secret_key(f"`litebase {command}` without LITEBASE_ENV=dev or test")
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from exc
    return settings


@contextmanager
def _database_url(settings: Settings, data_dir: Path) -> Iterator[str]:
    """DATABASE_URL, or the embedded Postgres in the data dir for as long as it is needed."""
    if settings.database_url:
        yield settings.database_url
        return
    from backend.lib.embedded import EmbeddedPostgres

    postgres = EmbeddedPostgres(data_dir / "pg")
    try:
        yield postgres.start()
    finally:
        postgres.stop()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Litebase: auth, collections, realtime, vectors, a model gateway and jobs."""


for _tool in (prompts, mail, gen, new):
    main.add_command(_tool)


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where embedded Postgres and Redis keep their data [LITEBASE_DATA_DIR, .litebase].",
)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@data_dir_option
@click.option("--no-worker", is_flag=True, help="Run the API only, without Celery worker/beat.")
def dev(host: str, port: int, data_dir: Path | None, no_worker: bool) -> None:
    """Run everything locally: Postgres, Redis, migrations, API, worker and beat."""
    from backend.devserver import DevServerError, run_dev

    settings = _settings()
    try:
        code = run_dev(
            settings,
            host=host,
            port=port,
            data_dir=data_dir or Path(settings.data_dir),
            with_worker=not no_worker,
        )
    except DevServerError as exc:
        raise click.ClickException(str(exc)) from exc
    sys.exit(code)


@main.command()
@data_dir_option
@click.option("--revision", default="head", show_default=True, help="Upgrade to this revision.")
@click.option("--downgrade", "downgrade_to", default=None, help="Downgrade to this revision.")
def migrate(data_dir: Path | None, revision: str, downgrade_to: str | None) -> None:
    """Apply database migrations (DATABASE_URL, or the embedded Postgres)."""
    from backend.db.migrate import downgrade, upgrade

    settings = _settings()
    with _database_url(settings, data_dir or Path(settings.data_dir)) as url:
        if downgrade_to is not None:
            downgrade(url, downgrade_to)
            click.echo(f"downgraded to {downgrade_to}")
        else:
            upgrade(url, revision)
            click.echo(f"upgraded to {revision}")


@main.command("create-admin")
@click.option("--email", required=True, help="The admin's email; an existing user is promoted.")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="8 to 256 characters.",
)
@data_dir_option
def create_admin(email: str, password: str, data_dir: Path | None) -> None:
    """Create an admin (or make an existing user one), with this password."""
    import asyncio

    import msgspec

    from backend.auth.schemas import SignUp
    from backend.db.migrate import upgrade

    try:
        msgspec.convert({"email": email, "password": password}, SignUp)
    except msgspec.ValidationError as exc:
        raise click.BadParameter(str(exc)) from exc
    settings = _settings()
    with _database_url(settings, data_dir or Path(settings.data_dir)) as url:
        upgrade(url)
        user_id = asyncio.run(_ensure_admin(url, settings, email, password))
    click.echo(f"admin {email} ({user_id}) is ready")


async def _ensure_admin(database_url: str, settings: Settings, email: str, password: str) -> str:
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    from backend.auth.admin import ensure_admin
    from backend.db.transactions import transaction
    from backend.lib.urls import async_database_url

    engine = create_async_engine(async_database_url(database_url))
    try:
        async with AsyncSession(engine, expire_on_commit=False) as db, transaction(db):
            user = await ensure_admin(db, settings, email, password)
        return str(user.id)
    finally:
        await engine.dispose()


@main.command("reindex")
@click.argument("collection")
@click.option("--force", is_flag=True, help="Embed every chunk again, reusing no stored vector.")
@click.option(
    "--queue",
    is_flag=True,
    help="Hand the work to the Celery workers (vectors.reindex) instead of doing it here.",
)
@data_dir_option
def reindex(collection: str, force: bool, queue: bool, data_dir: Path | None) -> None:
    """Embed COLLECTION's records again (new settings, failed records, or --force)."""
    import psycopg

    from backend.collections.spec import CollectionRegistry
    from backend.lib.urls import libpq_database_url
    from backend.vectors import REINDEX_TASK
    from backend.vectors.sync import reindex as reindex_here
    from workers.tasks.vectors import file_reader

    settings = _settings()
    found = CollectionRegistry.discover().get(collection)
    if found is None or found.embed is None:
        raise click.BadParameter(
            f"{collection!r} is not a collection that embeds", param_hint="COLLECTION"
        )
    if queue:
        from workers.celery_app import create_celery_app

        create_celery_app(settings).send_task(REINDEX_TASK, args=[collection])
        click.echo(f"vectors.reindex for {collection} is queued; watch embedding-status")
        return
    with (
        _database_url(settings, data_dir or Path(settings.data_dir)) as url,
        psycopg.connect(libpq_database_url(url), autocommit=True) as conn,
    ):
        done = reindex_here(
            conn,
            found,
            settings,
            force=force,
            progress=lambda n: click.echo(f"{n} records", err=True),
            read_file=file_reader(settings),
        )
    click.echo(f"{collection}: {done.done} done, {done.failed} failed, {done.pending} pending")
    if done.failed:
        sys.exit(1)


def _check_mail_templates(settings: Settings) -> None:
    """A worker renders the mail: it refuses to start with a template that cannot render,
    rather than fail each such mail later."""
    from backend.mail.compose import check_templates

    _, problems = check_templates(settings)
    if problems:
        raise click.ClickException(
            "mail templates do not render (`litebase mail check`):\n" + "\n".join(problems)
        )


@main.command()
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1))
def api(host: str, port: int, workers: int) -> None:
    """Serve the API with uvicorn (production: no reload, proxy headers trusted)."""
    import uvicorn

    from backend.realtime.transport import uvicorn_options

    settings = _serving_settings("api")  # refuse bad settings before binding the port
    uvicorn.run(
        "backend.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        # X-Forwarded-* only from FORWARDED_ALLOW_IPS (the load balancer); none by default.
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=",".join(settings.forwarded_allow_ips) or None,
        timeout_graceful_shutdown=10,
        access_log=False,  # the app logs each request with its id
        log_level=settings.log_level.lower(),
        **uvicorn_options(settings),  # server pings; a socket that stopped reading is dropped
    )


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--queues",
    "-Q",
    default=None,
    help="Comma-separated queues for one pool. Default: every queue, in two pools (user jobs"
    " apart from mail, webhooks, embeddings and upkeep, so jobs never hold those up).",
)
@click.option(
    "--concurrency",
    "-c",
    default=2,
    show_default=True,
    type=click.IntRange(1),
    help="Processes of the pool (without --queues: of the mail/webhooks/embeddings pool).",
)
@click.option(
    "--jobs-concurrency",
    default=2,
    show_default=True,
    type=click.IntRange(1),
    help="Without --queues: processes of the user jobs pool.",
)
@click.option("--pool", default="prefork", show_default=True)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(
    queues: str | None,
    concurrency: int,
    jobs_concurrency: int,
    pool: str,
    celery_args: tuple[str, ...],
) -> None:
    """Run Celery workers (extra arguments go to `celery worker`)."""
    from backend.events.tracing import start_tracing
    from backend.logs import configure_logging
    from workers.celery_app import create_celery_app

    settings = _serving_settings("worker")
    _check_mail_templates(settings)
    if queues is None:
        from workers.pools import run_pools

        sys.exit(run_pools(concurrency, jobs_concurrency, pool, celery_args))
    names = [name.strip() for name in queues.split(",") if name.strip()]
    if not names:
        raise click.BadParameter("name at least one queue", param_hint="--queues")
    configure_logging(settings)
    start_tracing(settings, "worker")
    app = create_celery_app(settings)
    app.worker_main(
        [
            "worker",
            f"--loglevel={settings.log_level}",
            f"--queues={','.join(names)}",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            "--without-gossip",
            "--without-mingle",
            *celery_args,
        ]
    )


@main.command()
@click.option("--schedule", default="celerybeat-schedule", show_default=True)
def beat(schedule: str) -> None:
    """Run Celery beat, the scheduler of periodic tasks."""
    from backend.events.tracing import start_tracing
    from backend.logs import configure_logging
    from workers.celery_app import create_celery_app

    settings = _serving_settings("beat")
    configure_logging(settings)
    start_tracing(settings, "beat")
    app = create_celery_app(settings)
    app.start(["beat", f"--loglevel={settings.log_level}", f"--schedule={schedule}"])


if __name__ == "__main__":
    main()
