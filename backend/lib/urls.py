"""Turn the one DATABASE_URL / REDIS_URL a user sets into the form each driver wants."""

from __future__ import annotations

from urllib.parse import quote, urlsplit, urlunsplit

_PG_SCHEMES = ("postgres", "postgresql")


def _with_scheme(url: str, scheme: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((scheme, *parts[1:]))


def _base_pg_scheme(url: str) -> str:
    scheme = urlsplit(url).scheme
    base = scheme.split("+", 1)[0]
    if base not in _PG_SCHEMES:
        raise ValueError(f"not a PostgreSQL URL (scheme {scheme!r}): expected postgresql://…")
    return base


def async_database_url(url: str) -> str:
    """The URL for SQLAlchemy's asyncpg dialect (the API)."""
    _base_pg_scheme(url)
    return _with_scheme(url, "postgresql+asyncpg")


def sync_database_url(url: str) -> str:
    """The URL for SQLAlchemy's psycopg 3 dialect (migrations and workers)."""
    _base_pg_scheme(url)
    return _with_scheme(url, "postgresql+psycopg")


def libpq_database_url(url: str) -> str:
    """A plain libpq URL, as psql and psycopg.connect() take it."""
    _base_pg_scheme(url)
    return _with_scheme(url, "postgresql")


def celery_redis_url(url: str) -> str:
    """Celery's spelling of a Redis URL: unix sockets are ``redis+socket:///path``.

    Both kombu (broker) and Celery's result backend accept that form.
    """
    parts = urlsplit(url)
    if parts.scheme != "unix":
        return url
    # redis-py selects the database of a socket URL with ?db=N, kombu with ?virtual_host=N.
    query = "&".join(
        "virtual_host=" + item[3:] if item.startswith("db=") else item
        for item in parts.query.split("&")
        if item
    )
    return f"redis+socket://{parts.path}" + (f"?{query}" if query else "")


def with_password(url: str, password: str) -> str:
    """``url`` with its password set to ``password`` (for secrets injected on their own, as
    ECS does from Secrets Manager, beside a URL that names host, user and database)."""
    parts = urlsplit(url)
    if parts.hostname is None:
        raise ValueError("the URL names no host to add a password to")
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
