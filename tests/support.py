"""Test helpers: the embedded services once per session, and a fresh migrated database per test."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from backend.db.migrate import upgrade
from backend.lib.embedded import EmbeddedPostgres, EmbeddedRedis
from backend.lib.urls import libpq_database_url

# The least a prod process starts with: a real secret, a real embedder, the app's URL and a way
# to send mail. Tests of prod behaviour start here and change what they are about.
PROD_ENV = {
    "LITEBASE_ENV": "prod",
    "SECRET_KEY": "k" * 48,
    "EMBEDDING_PROVIDER": "openai",
    "APP_URL": "https://app.example.com",
    "MAIL_BACKEND": "smtp",
    "SMTP_HOST": "email-smtp.eu-west-1.amazonaws.com",
    "SMTP_USERNAME": "AKIAEXAMPLE",
    "SMTP_PASSWORD": "a-real-smtp-password",
}


# Argon2id at a cost the suite can pay thousands of times (about 1 ms a hash, not 50): the
# integration settings and the e2e stack use it; tests of the cost itself set their own.
TEST_PASSWORD_HASH = {"password_hash_memory_kib": 1024, "password_hash_time_cost": 1}


def worker_index() -> int:
    """This pytest-xdist worker's number, 0 when the tests run in one process. Each worker
    starts embedded services of its own; with DATABASE_URL / REDIS_URL set they share the
    servers, so the names and Redis databases a worker uses carry its number."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)


def worker_redis_db(tier: int) -> int:
    """Redis database for a tier (1 integration, 2 e2e) of this worker: 1-2, 3-4, 5-6…"""
    return tier + 2 * worker_index()


TEMPLATE_DATABASE = f"litebase_test_template_{worker_index()}"


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def with_redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix://{parts.path}?db={db}"
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Services:
    """Where the session's Postgres and Redis are; the admin URL points at the maintenance db."""

    postgres_admin_url: str
    redis_url: str

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(libpq_database_url(self.postgres_admin_url), autocommit=True)

    def create_database(self, name: str, *, template: str | None = TEMPLATE_DATABASE) -> str:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
            if template:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                        sql.Identifier(name), sql.Identifier(template)
                    )
                )
            else:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return with_database(self.postgres_admin_url, name)

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    @contextmanager
    def fresh_database(self, *, migrated: bool = True) -> Iterator[str]:
        name = f"lbt_{uuid.uuid4().hex[:12]}"
        url = self.create_database(name, template=TEMPLATE_DATABASE if migrated else "template0")
        try:
            yield url
        finally:
            self.drop_database(name)

    def prepare_template(self) -> None:
        url = self.create_database(TEMPLATE_DATABASE, template=None)
        upgrade(url)


def use_memory_for_temporary_files() -> None:
    """Point this process's temporary files, and its children's, at memory (``/dev/shm``) when
    the machine has room there. Everything the suite writes is thrown away at the end: the
    session's Postgres, the stacks' data and files, ``litebase dev``'s first run, each
    ``tmp_path``. On this machine's disk every CREATE DATABASE from the template waited
    0.25-0.4 s on fsync, and every commit waited too; in memory a database takes 0.02 s."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 4 << 30:
        os.environ["TMPDIR"] = str(shm)
        tempfile.tempdir = None  # gettempdir() reads TMPDIR again


@contextmanager
def start_services() -> Iterator[Services]:
    """Postgres and Redis for the test session: DATABASE_URL / REDIS_URL if set, else embedded."""
    root = Path(tempfile.mkdtemp(prefix="lbt-"))
    postgres: EmbeddedPostgres | None = None
    redis_server: EmbeddedRedis | None = None
    try:
        database_url = os.environ.get("DATABASE_URL")
        if not database_url:
            postgres = EmbeddedPostgres(root / "pg")
            database_url = postgres.start()
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            redis_server = EmbeddedRedis(root / "redis", persistent=False)
            redis_url = redis_server.start()
        services = Services(postgres_admin_url=database_url, redis_url=redis_url)
        services.prepare_template()
        yield services
    finally:
        if redis_server is not None:
            redis_server.stop()
        if postgres is not None:
            postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


def answer_json(handler: BaseHTTPRequestHandler, status: int, body: object) -> None:
    """A test server's JSON answer: ``body`` with its status, type and length."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@contextmanager
def serving(server: HTTPServer) -> Iterator[None]:
    """Serve ``server`` from a thread for the block (the fake receivers' servers)."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class S3Server:
    """An S3-compatible server on loopback (moto's server mode) and how to reach it."""

    endpoint: str
    access_key_id: str = "testing"
    secret_access_key: str = "testing"
    region: str = "us-east-1"

    def client(self) -> object:
        """A boto3 S3 client on it (boto3 comes with moto): for tests to look behind obstore."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def new_bucket(self) -> str:
        """A bucket of its own for one test."""
        name = f"litebase-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)  # type: ignore[attr-defined]
        return name

    def settings_for(self, bucket: str) -> dict[str, str]:
        """The FILES_* settings that point Litebase at ``bucket`` on this server."""
        return {
            "files_storage": "s3",
            "files_s3_bucket": bucket,
            "files_s3_endpoint": self.endpoint,
            "files_s3_region": self.region,
            "files_s3_access_key_id": self.access_key_id,
            "files_s3_secret_access_key": self.secret_access_key,
        }


@contextmanager
def s3_on_loopback() -> Iterator[S3Server]:
    from moto.server import ThreadedMotoServer

    port = free_port()  # moto 5.0 cannot say which port 0 became
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(endpoint=f"http://127.0.0.1:{port}")
    finally:
        server.stop()
