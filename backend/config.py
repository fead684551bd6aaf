"""Settings, read from environment variables once and cached (see .env.example).

Longer than the ~400 lines other modules keep to, on purpose: ``Settings`` is the one list of
every setting, a field and the comment that explains it each, beside the checks that span
several of them, so .env.example and docs/configuration.md are checked against one place
(tests/unit/test_config.py)."""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec
from dotenv import dotenv_values

from backend.lib.redirects import redirect_url_is_valid
from backend.lib.urls import with_password

log = logging.getLogger(__name__)

Environment = Literal["dev", "test", "prod"]

DEV_SECRET_KEY = "dev-insecure-secret-key-change-me-before-prod"  # noqa: S105
PLACEHOLDER_SECRETS = frozenset({"", "change-me", "changeme", "secret", DEV_SECRET_KEY})
MIN_SECRET_KEY_LENGTH = 32


# Limits, sizes and counts: zero or less is never meant (msgspec refuses it, naming the field).
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
# OWASP's argon2id configurations (memory in KiB, passes), each as strong as the others; the
# default is the second. LITEBASE_ENV=prod refuses a cost below all of them.
OWASP_ARGON2ID = ((47_104, 1), (19_456, 2), (12_288, 3), (9_216, 4), (7_168, 5))
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
# Budgets and limits: 0 means none.
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]


# The settings holding the app's pages that mails link to (backend/mail/compose.py).
MAIL_PAGE_FIELDS = (
    "mail_verify_path",
    "mail_reset_path",
    "mail_email_change_path",
    "mail_invitation_path",
    "mail_sign_in_path",
    "mail_forgot_password_path",
    "mail_security_path",
)


class SettingsError(ValueError):
    """The environment describes settings the app cannot run with."""


# A sign-in provider's name: the {provider} of /auth/oauth/{provider}/... and of OAUTH_<NAME>_*.
OAUTH_NAME = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
# What each provider's OAUTH_<NAME>_<FIELD> variables set (docs/auth.md); list fields split on
# commas or spaces.
OAUTH_CLIENT_FIELDS = (
    "client_id",
    "client_secret",
    "preset",
    "issuer",
    "scopes",
    "display_name",
    "authorize_url",
    "token_url",
    "userinfo_url",
    "team_id",
    "key_id",
    "private_key",
)


class OAuthClient(msgspec.Struct, frozen=True, kw_only=True):
    """This app's registration at one sign-in provider (docs/auth.md, "Sign in with …").

    ``preset`` (google, github, microsoft, apple, gitlab, discord) knows the provider's
    endpoints; without one, ``issuer`` names any OpenID provider (found by discovery). The
    endpoint URLs override what the preset or discovery says. Apple signs in with a client
    secret made from ``team_id``, ``key_id`` and ``private_key`` (a .p8 key, PEM)."""

    name: str
    client_id: str
    client_secret: str = ""
    preset: str = ""
    issuer: str = ""
    scopes: tuple[str, ...] = ()
    display_name: str = ""
    authorize_url: str = ""
    token_url: str = ""
    userinfo_url: str = ""
    team_id: str = ""
    key_id: str = ""
    private_key: str = ""

    def __repr__(self) -> str:
        # Never the secret or the key: settings end up in logs and tracebacks.
        hidden = "'***'" if self.client_secret else "''"
        key = ", private_key='***'" if self.private_key else ""
        return (
            f"OAuthClient(name={self.name!r}, client_id={self.client_id!r},"
            f" client_secret={hidden}, preset={self.preset!r}, issuer={self.issuer!r}{key})"
        )

    __str__ = __repr__

    def check(self, env: str) -> None:
        """Refuse what cannot work, and outside dev and test a missing or placeholder secret."""
        where = f"OAUTH_{self.name.upper().replace('-', '_')}"
        if not OAUTH_NAME.match(self.name):
            raise SettingsError(
                f"OAuth provider name {self.name!r}: lower-case letters, digits and '-'"
            )
        if not self.client_id:
            raise SettingsError(f"{where}_CLIENT_ID is not set")
        if env == "prod" and not self.private_key and self.client_secret in PLACEHOLDER_SECRETS:
            raise SettingsError(
                f"{where}_CLIENT_SECRET is missing or a placeholder; LITEBASE_ENV=prod refuses"
                " to start (the provider gives you one when you register the app)"
            )


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    env: Environment = "dev"
    database_url: str | None = None
    database_password: str = ""
    redis_url: str | None = None
    redis_password: str = ""
    celery_broker_url: str | None = None
    celery_result_backend: str | None = None
    secret_key: str = DEV_SECRET_KEY
    cors_origins: tuple[str, ...] = ()
    # Response headers a browser script may read (the rest stay hidden by CORS): ETags for
    # If-Match, Retry-After on 429/503, the request id for support, the rate-limit headers,
    # and those of the tus protocol (a browser's tus client reads them).
    cors_expose_headers: tuple[str, ...] = (
        "ETag",
        "Retry-After",
        "X-Request-Id",
        "RateLimit-Limit",
        "RateLimit-Policy",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        # tus resumable uploads (/files/uploads): where an upload is, how far it got.
        "Location",
        "Upload-Offset",
        "Upload-Length",
        "Upload-Expires",
        "Upload-Metadata",
        "Tus-Resumable",
        "Tus-Version",
        "Tus-Extension",
        "Tus-Max-Size",
        "Litebase-File-Name",
    )
    # How long a browser caches a preflight (OPTIONS) answer: one preflight per route and
    # origin per this many seconds instead of one before every non-simple request.
    cors_max_age_seconds: NonNegativeInt = 600
    max_body_bytes: PositiveInt = 1_048_576
    # An idle keep-alive connection is closed after this; above a load balancer's own idle
    # timeout, so the balancer never reuses a connection the API is closing (a 502).
    http_keepalive_seconds: PositiveInt = 75
    # Proxies whose X-Forwarded-For / -Proto `litebase api` believes (comma-separated addresses
    # or networks); the client is the right-most address not among them. Empty: none, the
    # socket's peer is the client (so a caller cannot pick its own rate-limit key).
    forwarded_allow_ips: tuple[str, ...] = ()
    log_level: str = "INFO"
    log_format: Literal["console", "json"] = "console"
    ready_timeout_seconds: float = 2.0
    # GET /metrics answers sources in these networks, or a bearer of METRICS_TOKEN; no one else.
    metrics_allowed_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    metrics_token: str = ""
    # Tracing (docs/tracing.md): spans go over OTLP/HTTP to this base URL (…/v1/traces is
    # added); empty, the default, is off, with no tracer installed. The service name defaults
    # to litebase-api, litebase-worker or litebase-beat by the process.
    otel_exporter_otlp_endpoint: str = ""
    otel_service_name: str = ""
    db_pool_size: PositiveInt = 10
    db_max_overflow: int = 10
    redis_max_connections: PositiveInt = 200
    redis_pool_timeout_seconds: PositiveFloat = 5.0
    celery_visibility_timeout_seconds: PositiveInt = 3600
    celery_max_deliveries: PositiveInt = 3
    queue_metrics_namespace: str = ""
    data_dir: str = ".litebase"
    public_url: str = "http://127.0.0.1:8000"
    # auth
    access_token_ttl_seconds: PositiveInt = 900
    refresh_reuse_grace_seconds: int = 10
    session_idle_timeout_days: PositiveInt = 30
    session_cache_seconds: float = 5.0
    jwt_issuer: str = "litebase"
    jwt_audience: str = "litebase"
    auth_require_verified_email: bool = False
    # Argon2id's cost per password hash: memory (KiB) and passes. prod refuses less than OWASP's
    # configurations (OWASP_ARGON2ID); a hash made at other costs is redone at sign-in.
    password_hash_memory_kib: Annotated[int, msgspec.Meta(ge=8, le=4_194_304)] = 19_456
    password_hash_time_cost: Annotated[int, msgspec.Meta(ge=1, le=100)] = 2
    # May an account whose email is unverified create API keys and orgs? Unset: yes in dev and
    # test, no in prod (Settings.unverified_may_act).
    auth_unverified_keys_and_orgs: bool | None = None
    auth_failed_signin_limit: PositiveInt = 10
    auth_failed_signin_window_seconds: PositiveInt = 900
    rate_limit_signup_per_minute: PositiveInt = 30
    rate_limit_token_per_minute: PositiveInt = 60
    rate_limit_password_per_minute: PositiveInt = 10
    # Requests a minute on every route that asks who calls (backend/auth/limits.py): per user
    # (all sessions), per API key, per address of anonymous callers. 0: no limit.
    rate_limit_user_per_minute: NonNegativeInt = 600
    rate_limit_key_per_minute: NonNegativeInt = 1200
    rate_limit_anonymous_per_minute: NonNegativeInt = 300
    verify_token_ttl_seconds: int = 86_400
    reset_token_ttl_seconds: int = 3_600
    sign_in_code_ttl_seconds: PositiveInt = 600
    mfa_token_ttl_seconds: PositiveInt = 300
    totp_issuer: str = "Litebase"
    # Anonymous users (grant_type anonymous, docs/auth.md): off unless enabled; how many one
    # client address may make in an hour; and after how many days without a session used
    # (a sign-in or a refresh) beat deletes them.
    auth_anonymous_enabled: bool = False
    auth_anonymous_per_hour: PositiveInt = 30
    auth_anonymous_idle_days: PositiveInt = 30
    # Passkeys (WebAuthn, backend/auth/passkeys.py). The relying party id is the site's host name
    # (example.com covers app.example.com too); origins are the pages allowed to use them. Unset
    # outside prod: localhost, from any http(s)://localhost:<port> page. In prod both or neither
    # (neither: passkeys are off).
    webauthn_rp_id: str = ""
    webauthn_rp_name: str = "Litebase"
    webauthn_origins: tuple[str, ...] = ()
    # How long a passkey ceremony (its single-use challenge) may take.
    webauthn_challenge_ttl_seconds: PositiveInt = 300
    webauthn_max_passkeys_per_user: PositiveInt = 20
    invitation_ttl_seconds: int = 7 * 86_400
    # Invitations one user may send for one org in an hour (each mails a stranger); more: 429.
    invitations_per_hour: PositiveInt = 20
    # Sign-in with OAuth / OpenID providers (docs/auth.md). Where the browser may be sent back
    # to after it: exact URLs, or a prefix ending in /* (same origin, that path and below).
    auth_redirect_urls: tuple[str, ...] = ()
    # The providers, from OAUTH_PROVIDERS + OAUTH_<NAME>_* variables (settings_from_env) and
    # from the YAML file OAUTH_PROVIDERS_FILE (read when the app starts; the variables win).
    oauth_providers: tuple[str, ...] = ()
    oauth_clients: tuple[OAuthClient, ...] = ()
    oauth_providers_file: str = ""
    oauth_state_ttl_seconds: PositiveInt = 600  # from leaving for the provider to coming back
    oauth_code_ttl_seconds: PositiveInt = 60  # the one-time code the app exchanges
    oauth_discovery_cache_seconds: NonNegativeInt = 3600  # a provider's metadata and keys
    oauth_timeout_seconds: PositiveFloat = 10.0  # each call to a provider
    rate_limit_oauth_per_minute: PositiveInt = 30
    # collections
    filter_max_length: PositiveInt = 4096
    # Compiled client filters kept per collection, bounded by their total length (characters).
    filter_cache_chars: PositiveInt = 1_048_576
    # Your own modules, imported by the API and the workers: routes, job types, tasks.
    app_modules: tuple[str, ...] = ()
    page_default_limit: PositiveInt = 50
    page_max_limit: PositiveInt = 500
    batch_max_operations: PositiveInt = 100
    # outbox relay
    relay_enabled: bool = True
    relay_consumers: tuple[str, ...] = ()
    relay_batch_size: PositiveInt = 500
    relay_poll_seconds: float = 1.0
    relay_standby_seconds: float = 2.0
    # realtime
    realtime_enabled: bool = True
    realtime_auth_timeout_seconds: float = 5.0
    realtime_reauth_grace_seconds: float = 30.0
    realtime_max_frame_bytes: PositiveInt = 65_536
    realtime_frames_per_second: PositiveInt = 20
    realtime_max_subscriptions: PositiveInt = 100
    # A resume (subscribe with since) replays at most this many events; more: replay_too_long.
    realtime_replay_max_events: PositiveInt = 10_000
    realtime_send_queue: PositiveInt = 1000
    realtime_send_timeout_seconds: PositiveFloat = 10.0
    realtime_ping_interval_seconds: PositiveFloat = 20.0
    realtime_ping_timeout_seconds: PositiveFloat = 20.0
    realtime_presence_ttl_seconds: float = 30.0
    outbox_retention_hours: PositiveInt = 24
    # jobs
    jobs_max_active_per_user: PositiveInt = 10
    jobs_requeue_after_seconds: int = 60
    jobs_requeue_interval_seconds: PositiveInt = 60
    jobs_schedulable_types: tuple[str, ...] = ("reindex_collection",)
    jobs_schedule_min_interval_seconds: PositiveInt = 300
    jobs_schedule_poll_seconds: PositiveInt = 30
    jobs_max_schedules_per_user: PositiveInt = 20
    # embeddings and vector search
    embedding_provider: Literal["hash", "openai", "local"] = "hash"
    # hash is lexical feature hashing, not a model: prod refuses it unless this says so.
    embedding_allow_hash: bool = False
    embedding_model: str = ""
    embedding_dimensions: int = 0
    embedding_base_url: str = ""
    embedding_api_key: str = ""
    embedding_timeout_seconds: PositiveFloat = 30.0
    # Retries of one call on the provider (429, 5xx, timeouts), as an alias's AI_RETRIES are:
    # the same transport (backend/lib/upstream.py); the embedding task's own retries come after.
    embedding_retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 1
    embedding_batch_records: PositiveInt = 64
    embedding_max_retries: int = 5
    embedding_retry_backoff_seconds: float = 2.0
    embedding_retry_backoff_max_seconds: float = 300.0
    # The sweep (beat) sends records that failed for good through embedding again, backing off.
    embedding_sweep_interval_seconds: PositiveInt = 60
    embedding_sweep_max_retries: NonNegativeInt = 10
    embedding_sweep_backoff_seconds: PositiveFloat = 60.0
    embedding_sweep_backoff_max_seconds: PositiveFloat = 3600.0
    embedding_sweep_batch: PositiveInt = 1000
    # Files an Embed(files=[...]) names (docs/files.md): a PDF is read for at most this many
    # pages, any file for at most this many characters of text (the rest is left out, and the
    # file's status says so); a file larger than FILE_MAX_BYTES is failed without being read,
    # one whose reading takes longer than FILE_MAX_SECONDS is failed (a hostile PDF).
    embedding_file_max_pages: PositiveInt = 500
    embedding_file_max_chars: PositiveInt = 1_000_000
    embedding_file_max_bytes: PositiveInt = 100 * 1024 * 1024
    embedding_file_max_seconds: PositiveFloat = 120.0
    # GET …/embedding-status lists at most this many failed files (newest first).
    embedding_status_max_failed_files: PositiveInt = 50
    vector_search_max_k: PositiveInt = 100
    # The longest search query, in characters; longer is 422 (it is embedded and matched).
    search_max_query_chars: PositiveInt = 4000
    vector_ef_search: PositiveInt = 40
    vector_exact_scan_max_rows: int = 10_000
    vector_candidates_per_result: PositiveInt = 4
    vector_query_cache_size: int = 1024
    # How long an API process keeps which embedding version is active before reading it again.
    vector_version_cache_seconds: NonNegativeFloat = 2.0
    vector_status_refresh_seconds: float = 15.0
    vector_index_build_memory: str = "1GB"
    # HNSW build parameters of each new version's index (m is pgvector's default, ef_construction
    # twice its 64: the recall on clustered data, docs/vectors.md).
    vector_hnsw_m: int = 16
    vector_hnsw_ef_construction: int = 128
    # outgoing webhooks
    webhook_timeout_seconds: PositiveFloat = 10.0
    webhook_retry_backoff_seconds: PositiveFloat = 30.0
    webhook_retry_backoff_max_seconds: PositiveFloat = 3000.0
    webhook_retry_window_seconds: PositiveFloat = 86_400.0
    webhook_secret_overlap_seconds: int = 86_400
    webhook_allow_private_targets: bool = False
    webhook_allowed_networks: tuple[str, ...] = ()
    webhook_max_endpoints: PositiveInt = 100
    webhook_requeue_after_seconds: int = 60
    webhook_delivery_retention_days: PositiveInt = 30
    # model gateway (docs/ai.md)
    models_file: str = ""
    openai_api_key: str = ""
    openai_base_url: str = ""
    openai_models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
    ai_timeout_seconds: PositiveFloat = 60.0
    ai_retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 1
    ai_max_body_bytes: PositiveInt = 4_194_304
    ai_completion_reserve_tokens: PositiveInt = 1024
    ai_budget_period: Literal["day", "week", "month"] = "month"
    # Unset: none in dev and test, PROD_USER_LIMITS in prod (backend/ai/budgets.py).
    ai_user_tokens_per_period: NonNegativeInt | None = None
    ai_key_tokens_per_period: NonNegativeInt = 0
    ai_org_tokens_per_period: NonNegativeInt = 0
    ai_user_requests_per_minute: NonNegativeInt | None = None
    ai_key_requests_per_minute: NonNegativeInt = 0
    ai_org_requests_per_minute: NonNegativeInt = 0
    ai_budget_sync_seconds: PositiveFloat = 30.0
    ai_usage_flush_seconds: PositiveFloat = 1.0
    ai_usage_batch_size: PositiveInt = 1000
    ai_usage_retention_days: PositiveInt = 30
    # mail (docs/auth.md#mail)
    # console: the worker prints each mail and keeps the newest in Redis (GET /dev/mail in dev);
    # smtp: a real server. Prod refuses console unless MAIL_ALLOW_CONSOLE_IN_PROD says so.
    mail_backend: Literal["console", "smtp"] = "console"
    mail_allow_console_in_prod: bool = False
    mail_from: str = "Litebase <no-reply@localhost>"
    # The operator's templates, searched before the shipped ones (backend/mail/templates).
    mail_templates_dir: str = ""
    # Mails link to the app, not the API: APP_URL + the page's path (+ ?token=…). Unset: the
    # API's PUBLIC_URL in dev and test; prod refuses to start without it.
    app_name: str = "Litebase"
    app_url: str = ""
    mail_verify_path: str = "/verify"
    mail_reset_path: str = "/reset-password"
    mail_email_change_path: str = "/confirm-email"
    mail_invitation_path: str = "/accept-invitation"
    mail_sign_in_path: str = "/sign-in"
    mail_forgot_password_path: str = "/forgot-password"  # noqa: S105 - a page, not a secret
    mail_security_path: str = "/account/security"
    # Mail a person when their account is signed in to from a device and address it was not
    # used from before (backend/auth/core.py).
    auth_new_sign_in_mail: bool = True
    smtp_host: str = "localhost"
    smtp_port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 587
    smtp_username: str = ""
    smtp_password: str = ""
    # starttls: upgrade a plain connection (port 587); tls: TLS from the start (port 465);
    # none: no encryption (a relay on the same host only).
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_timeout_seconds: PositiveFloat = 30.0
    # The CA bundle SMTP servers' certificates are checked against; empty: the system's.
    smtp_ca_file: str = ""
    # prompts and asking a collection (docs/ai.md)
    prompts_dir: str = "prompts"
    ask_prompt: str = "rag_answer"
    ask_max_k: PositiveInt = 20
    ask_max_question_chars: PositiveInt = 4000
    ask_max_background: PositiveInt = 100
    # files (docs/files.md): where their bytes live, and the limits of uploads and downloads
    files_storage: Literal["local", "s3"] = "local"
    # local: under this folder (empty: <data dir>/files)
    files_local_dir: str = ""
    # s3: a bucket (any S3-compatible server at FILES_S3_ENDPOINT); keys, when not set, come
    # from the standard AWS chain (environment, web identity, the ECS task role, the instance)
    files_s3_bucket: str = ""
    files_s3_prefix: str = ""
    files_s3_region: str = ""
    files_s3_endpoint: str = ""
    files_s3_access_key_id: str = ""
    files_s3_secret_access_key: str = ""
    files_s3_encryption: Literal["AES256", "aws:kms", "aws:kms:dsse"] = "AES256"
    files_s3_kms_key_id: str = ""
    # Uploads go up in parts of this size (S3's floor is 5 MiB), this many at once: the memory
    # one upload may hold is about their product.
    files_upload_part_bytes: Annotated[int, msgspec.Meta(ge=5 * 1024 * 1024)] = 8 * 1024 * 1024
    files_upload_concurrency: PositiveInt = 2
    # A multipart create or update: its whole body, and how many parts it may have.
    files_max_upload_bytes: PositiveInt = 104_857_600
    files_max_parts: PositiveInt = 50
    # A stored file name (sanitized, with its random suffix) is at most this long.
    files_name_max_chars: Annotated[int, msgspec.Meta(ge=32, le=255)] = 100
    # Thumbnails (?thumb=WxH): made at most this many at once per API process, and only of
    # images of at most this many pixels (read from the header, before decoding: bombs).
    files_thumb_concurrency: PositiveInt = 2
    files_thumb_max_pixels: PositiveInt = 40_000_000
    # POST /files/token: how long a file token (?token= on a download) lasts.
    files_token_ttl_seconds: PositiveInt = 120
    # The sweeper (beat) removes files no record holds: uploads left unfinished for this long
    # (a crash between upload and commit), and files whose record let go of them.
    files_sweep_interval_seconds: PositiveInt = 3600
    files_pending_grace_seconds: PositiveInt = 21_600
    files_sweep_batch: PositiveInt = 1000
    # Resumable uploads (tus, /files/uploads): an unfinished one expires this long after it
    # was created (the sweeper then removes its bytes), and one user may have at most this many
    # unfinished at once.
    files_resumable_expiry_seconds: PositiveInt = 86_400
    files_resumable_max_unfinished: PositiveInt = 10

    def __post_init__(self) -> None:
        if self.page_default_limit > self.page_max_limit:
            raise SettingsError("PAGE_DEFAULT_LIMIT cannot exceed PAGE_MAX_LIMIT")
        if not re.fullmatch(r"[1-9][0-9]*(kB|MB|GB)", self.vector_index_build_memory):
            raise SettingsError("VECTOR_INDEX_BUILD_MEMORY must look like 512MB or 1GB")
        if not 2 <= self.vector_hnsw_m <= 100:
            raise SettingsError("VECTOR_HNSW_M must be between 2 and 100 (pgvector's range)")
        if not 2 * self.vector_hnsw_m <= self.vector_hnsw_ef_construction <= 1000:
            raise SettingsError(
                "VECTOR_HNSW_EF_CONSTRUCTION must be between twice VECTOR_HNSW_M and 1000"
            )
        if self.env == "prod":
            self.check_secret_key("LITEBASE_ENV=prod")
            self._check_password_cost()
            if self.embedding_provider == "hash" and not self.embedding_allow_hash:
                raise SettingsError(
                    "EMBEDDING_PROVIDER=hash is word hashing, not a model; LITEBASE_ENV=prod"
                    " refuses it. Set EMBEDDING_PROVIDER=openai (or local), or"
                    " EMBEDDING_ALLOW_HASH=true if lexical matching is really what you want"
                )
        for name, networks in (
            ("FORWARDED_ALLOW_IPS", self.forwarded_allow_ips),
            ("METRICS_ALLOWED_NETWORKS", self.metrics_allowed_networks),
            ("WEBHOOK_ALLOWED_NETWORKS", self.webhook_allowed_networks),
        ):
            for network in networks:
                try:
                    ipaddress.ip_network(network, strict=False)
                except ValueError:
                    raise SettingsError(
                        f"{name}: {network!r} is not an address or a network"
                        " (10.0.0.1, 10.0.0.0/8, fd00::/8)"
                    ) from None
        self._check_webhooks()
        self._check_mail()
        self._check_webauthn()
        self._check_oauth()
        self._check_files()

    def _check_password_cost(self) -> None:
        memory, passes = self.password_hash_memory_kib, self.password_hash_time_cost
        if not any(memory >= m and passes >= t for m, t in OWASP_ARGON2ID):
            raise SettingsError(
                f"PASSWORD_HASH_MEMORY_KIB={memory} with PASSWORD_HASH_TIME_COST={passes} is"
                " cheaper than OWASP's argon2id floor; LITEBASE_ENV=prod refuses it. Use one of"
                " (KiB, passes): " + ", ".join(f"({m}, {t})" for m, t in OWASP_ARGON2ID)
            )

    def check_secret_key(self, who: str) -> None:
        """Refuse a placeholder or short SECRET_KEY: anyone can forge tokens with one."""
        if self.secret_key in PLACEHOLDER_SECRETS:
            raise SettingsError(
                f"SECRET_KEY is missing or a placeholder; {who} refuses to start. "
                "Generate one with: "
                'python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        if len(self.secret_key) < MIN_SECRET_KEY_LENGTH:
            raise SettingsError(
                f"SECRET_KEY must be at least {MIN_SECRET_KEY_LENGTH} characters; {who}"
                " refuses a shorter one"
            )

    def _check_webhooks(self) -> None:
        if self.webhook_retry_backoff_max_seconds >= self.celery_visibility_timeout_seconds:
            # A retry waits in the broker unacknowledged; past the visibility timeout the
            # broker hands it out again, early and twice.
            raise SettingsError(
                "WEBHOOK_RETRY_BACKOFF_MAX_SECONDS must be below CELERY_VISIBILITY_TIMEOUT_SECONDS"
            )
        if self.webhook_allow_private_targets and self.env == "prod":
            raise SettingsError(
                "WEBHOOK_ALLOW_PRIVATE_TARGETS lets webhooks reach internal addresses (SSRF); "
                "LITEBASE_ENV=prod refuses it. List internal receivers in "
                "WEBHOOK_ALLOWED_NETWORKS instead"
            )
        if self.webhook_allow_private_targets:
            log.warning(
                "WEBHOOK_ALLOW_PRIVATE_TARGETS is on: webhooks may reach loopback and private "
                "addresses (SSRF). Never in production."
            )

    def _check_mail(self) -> None:
        for name in MAIL_PAGE_FIELDS:
            if not getattr(self, name).startswith("/"):
                raise SettingsError(f"{name.upper()} must be a path starting with /")
        if self.app_url and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", self.app_url):
            raise SettingsError("APP_URL must be an http(s) URL such as https://app.example.com")
        if self.mail_templates_dir and not os.path.isdir(self.mail_templates_dir):
            raise SettingsError(f"MAIL_TEMPLATES_DIR {self.mail_templates_dir!r} is not a folder")
        if self.env != "prod":
            return
        if not self.app_url:
            raise SettingsError(
                "APP_URL is not set; LITEBASE_ENV=prod refuses to start without it: mails link"
                " to your app's pages (APP_URL + MAIL_VERIFY_PATH, …)"
            )
        if self.mail_backend == "console" and not self.mail_allow_console_in_prod:
            raise SettingsError(
                "MAIL_BACKEND=console only prints mail; LITEBASE_ENV=prod refuses it. Set"
                " MAIL_BACKEND=smtp and the SMTP_* settings, or MAIL_ALLOW_CONSOLE_IN_PROD=true"
                " if nobody is to get mail"
            )
        if self.mail_backend == "smtp" and self.smtp_username:
            if self.smtp_password in PLACEHOLDER_SECRETS:
                raise SettingsError(
                    "SMTP_PASSWORD is missing or a placeholder; LITEBASE_ENV=prod refuses to"
                    " start with SMTP_USERNAME set and no real password"
                )
            if self.smtp_security == "none":
                raise SettingsError(
                    "SMTP_SECURITY=none would send SMTP_PASSWORD unencrypted; LITEBASE_ENV=prod"
                    " refuses it (use starttls or tls)"
                )

    @property
    def mail_app_url(self) -> str:
        """The base of every link in mail: APP_URL, or (dev and test) PUBLIC_URL."""
        return (self.app_url or self.public_url).rstrip("/")

    def _check_webauthn(self) -> None:
        """A relying party browsers will accept: a bare host name, and origins on it (https, or
        http on localhost). Refused at start rather than at a user's first passkey."""
        rp_id = self.passkey_rp_id
        if self.webauthn_rp_id and not _HOST_NAME.fullmatch(self.webauthn_rp_id):
            raise SettingsError(
                f"WEBAUTHN_RP_ID must be a host name such as example.com (no scheme, port or"
                f" path, lower case, not an address); got {self.webauthn_rp_id!r}"
            )
        if not rp_id:
            if self.webauthn_origins:
                raise SettingsError("WEBAUTHN_ORIGINS needs WEBAUTHN_RP_ID (the site's host name)")
            return
        if not self.webauthn_origins and rp_id != "localhost":
            raise SettingsError(
                f"WEBAUTHN_RP_ID={rp_id} needs WEBAUTHN_ORIGINS: the pages that use passkeys,"
                f" e.g. https://{rp_id}"
            )
        for origin in self.webauthn_origins:
            if origin.startswith("android:apk-key-hash:"):
                continue  # an Android app's origin (its signing key), not a web page
            parts = urlsplit(origin)
            host = parts.hostname or ""
            secure = parts.scheme == "https" or (parts.scheme == "http" and _is_localhost(host))
            if not secure or parts.path or parts.query or parts.fragment or origin.endswith("/"):
                raise SettingsError(
                    f"WEBAUTHN_ORIGINS: {origin!r} is not an origin browsers allow passkeys on"
                    " (https://host[:port], or http://localhost[:port])"
                )
            if host != rp_id and not host.endswith(f".{rp_id}"):
                raise SettingsError(
                    f"WEBAUTHN_ORIGINS: {origin!r} is not on WEBAUTHN_RP_ID={rp_id}"
                    " (the host must be it or one of its subdomains)"
                )

    @property
    def passkey_rp_id(self) -> str:
        """The relying party id passkeys are made for; empty: passkeys are off (prod, unset)."""
        if self.webauthn_rp_id:
            return self.webauthn_rp_id
        return "" if self.env == "prod" else "localhost"

    def passkey_origins(self, seen: str) -> list[str]:
        """The origins a ceremony that happened on ``seen`` may come from: WEBAUTHN_ORIGINS, or,
        when it is unset outside prod, ``seen`` itself if it is a page on localhost."""
        if self.webauthn_origins:
            return list(self.webauthn_origins)
        parts = urlsplit(seen)
        local = parts.scheme in ("http", "https") and _is_localhost(parts.hostname or "")
        return [seen] if local and seen == f"{parts.scheme}://{parts.netloc}" else []

    def _check_oauth(self) -> None:
        for client in self.oauth_clients:
            client.check(self.env)
        for url in self.auth_redirect_urls:
            if not redirect_url_is_valid(url):
                raise SettingsError(
                    f"AUTH_REDIRECT_URLS: {url!r} is not an absolute URL (scheme://host/path),"
                    " or has a '*' anywhere but at the end after a '/'"
                )

    def _check_files(self) -> None:
        if self.files_storage != "s3":
            return
        if not self.files_s3_bucket:
            raise SettingsError("FILES_STORAGE=s3 needs FILES_S3_BUCKET")
        if self.files_s3_access_key_id and not self.files_s3_secret_access_key:
            raise SettingsError(
                "FILES_S3_ACCESS_KEY_ID is set without FILES_S3_SECRET_ACCESS_KEY (leave both"
                " empty to use the AWS chain: the task role, the instance profile)"
            )
        if self.env == "prod" and self.files_s3_endpoint.startswith("http://"):
            raise SettingsError(
                "FILES_S3_ENDPOINT is plain http; LITEBASE_ENV=prod refuses to send files and"
                " keys unencrypted. Use https"
            )
        if self.files_s3_kms_key_id and self.files_s3_encryption == "AES256":
            raise SettingsError("FILES_S3_KMS_KEY_ID needs FILES_S3_ENCRYPTION=aws:kms")

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    @property
    def unverified_may_act(self) -> bool:
        """Whether an unverified account may create API keys and orgs."""
        if self.auth_unverified_keys_and_orgs is not None:
            return self.auth_unverified_keys_and_orgs
        return self.env != "prod"


# A host name as a WebAuthn relying party id: lower-case labels, no port, not an address.
_LABEL = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"(?=.{{1,253}}$)(?![0-9.]+$){_LABEL}(\.{_LABEL})*")


def _is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


# Variables whose name is not LITEBASE_<FIELD> or <FIELD> in upper case.
_ENV_ALIASES = {
    "env": "LITEBASE_ENV",
    "data_dir": "LITEBASE_DATA_DIR",
    "models_file": "LITEBASE_MODELS",
    # Not one variable: OAUTH_<NAME>_CLIENT_ID and the rest, per name in OAUTH_PROVIDERS.
    "oauth_clients": "OAUTH_<NAME>_CLIENT_ID",
}
_LIST_FIELDS = frozenset(
    {
        "app_modules",
        "cors_origins",
        "cors_expose_headers",
        "forwarded_allow_ips",
        "metrics_allowed_networks",
        "relay_consumers",
        "jobs_schedulable_types",
        "webhook_allowed_networks",
        "webauthn_origins",
        "openai_models",
        "auth_redirect_urls",
        "oauth_providers",
    }
)


def _oauth_clients(environ: Mapping[str, str], names: list[str]) -> list[dict[str, Any]]:
    """OAUTH_<NAME>_<FIELD> of each provider named in OAUTH_PROVIDERS."""
    clients = []
    for name in names:
        prefix = f"OAUTH_{name.upper().replace('-', '_')}_"
        found: dict[str, Any] = {"name": name}
        for field in OAUTH_CLIENT_FIELDS:
            value = environ.get(prefix + field.upper())
            if value:
                found[field] = value.replace(",", " ").split() if field == "scopes" else value
        clients.append(found)
    return clients


def settings_from_env(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build settings from environment variables; ``overrides`` win (used by tests and the CLI)."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for name in Settings.__struct_fields__:
        key = _ENV_ALIASES.get(name, name.upper())
        value = environ.get(key)
        if value is None or value == "":
            continue
        if name in _LIST_FIELDS:
            raw[name] = [item.strip() for item in value.split(",") if item.strip()]
        else:
            raw[name] = value
    if "oauth_providers" in raw and "oauth_clients" not in overrides:
        raw["oauth_clients"] = _oauth_clients(environ, raw["oauth_providers"])
    raw.update(overrides)
    # A password given on its own (a secret) goes into its URL.
    for url_key, password_key in (
        ("database_url", "database_password"),
        ("redis_url", "redis_password"),
    ):
        if raw.get(url_key) and raw.get(password_key):
            try:
                raw[url_key] = with_password(raw[url_key], raw[password_key])
            except ValueError as exc:
                raise SettingsError(f"invalid setting {url_key.upper()}: {exc}") from exc
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        # msgspec ends with " - at `$.max_body_bytes`"; __post_init__ errors name no field.
        message, _, where = str(exc).partition(" - at `$.")
        if not where:
            raise SettingsError(message) from exc
        field = where.rstrip("`")
        key = _ENV_ALIASES.get(field, field.upper())
        raise SettingsError(f"invalid setting {key}: {message}") from exc


def environ_with_dotenv(
    environ: Mapping[str, str] | None = None, path: str | None = None
) -> dict[str, str]:
    """The environment with ``.env`` under it: variables set in the environment win over the
    file's. The file is LITEBASE_ENV_FILE, else ``.env`` in the working directory; none is
    fine (production sets the environment itself)."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("LITEBASE_ENV_FILE") or ".env"
    from_file = {k: v for k, v in dotenv_values(path).items() if v is not None}
    return {**from_file, **environ}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings every command and the app read: the environment, over ``.env``."""
    return settings_from_env(environ_with_dotenv())
