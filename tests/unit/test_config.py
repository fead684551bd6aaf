import pytest
from uvicorn.importer import import_from_string

from backend.config import DEV_SECRET_KEY, SettingsError, settings_from_env
from backend.realtime.transport import BoundedWebSocketProtocol, uvicorn_flags, uvicorn_options
from tests.support import PROD_ENV

STRONG_KEY = "k" * 48


@pytest.mark.parametrize(
    ("environ", "field", "expected"),
    [
        ({}, "env", "dev"),
        ({"LITEBASE_ENV": "test"}, "env", "test"),
        ({"MAX_BODY_BYTES": "2048"}, "max_body_bytes", 2048),
        (
            {"CORS_ORIGINS": "https://a.example, https://b.example"},
            "cors_origins",
            ("https://a.example", "https://b.example"),
        ),
        ({"READY_TIMEOUT_SECONDS": "0.5"}, "ready_timeout_seconds", 0.5),
        ({"LITEBASE_DATA_DIR": "/srv/lb"}, "data_dir", "/srv/lb"),
        ({"DATABASE_URL": ""}, "database_url", None),
    ],
)
def test_settings_are_read_from_the_environment(environ, field, expected):
    assert getattr(settings_from_env(environ), field) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MAX_BODY_BYTES": "lots"}, "MAX_BODY_BYTES"),
        ({"MAX_BODY_BYTES": "0"}, "MAX_BODY_BYTES"),
        ({"LITEBASE_ENV": "staging"}, "LITEBASE_ENV"),
        ({"CELERY_MAX_DELIVERIES": "0"}, "CELERY_MAX_DELIVERIES"),
        ({"REALTIME_PING_TIMEOUT_SECONDS": "0"}, "REALTIME_PING_TIMEOUT_SECONDS"),
        ({"REALTIME_SEND_TIMEOUT_SECONDS": "-1"}, "REALTIME_SEND_TIMEOUT_SECONDS"),
    ],
)
def test_a_bad_setting_is_refused_with_its_variable_named(environ, message):
    with pytest.raises(SettingsError, match=message):
        settings_from_env(environ)


@pytest.mark.parametrize(
    "secret",
    [None, "", "change-me", "changeme", DEV_SECRET_KEY, "short-but-not-a-placeholder"],
)
def test_prod_refuses_a_missing_placeholder_or_short_secret(secret):
    environ = {"LITEBASE_ENV": "prod"}
    if secret is not None:
        environ["SECRET_KEY"] = secret
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        settings_from_env(environ)


PROD = PROD_ENV


def test_prod_starts_with_a_strong_secret():
    settings = settings_from_env(PROD)
    assert settings.secret_key == STRONG_KEY


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"MAIL_BACKEND": "console"}, "MAIL_BACKEND=console only prints mail"),
        ({"APP_URL": ""}, "APP_URL is not set"),
        ({"SMTP_PASSWORD": ""}, "SMTP_PASSWORD is missing or a placeholder"),
        ({"SMTP_PASSWORD": "change-me"}, "SMTP_PASSWORD is missing or a placeholder"),
        ({"SMTP_SECURITY": "none"}, "SMTP_SECURITY=none would send SMTP_PASSWORD"),
    ],
)
def test_prod_refuses_mail_that_would_not_reach_anyone_safely(changes, message):
    with pytest.raises(SettingsError, match=message):
        settings_from_env({**PROD, **changes})


@pytest.mark.parametrize(("memory", "passes"), [(19_455, 2), (47_103, 1), (7_168, 4), (1_024, 1)])
def test_prod_refuses_a_password_hash_cheaper_than_owasps(memory, passes):
    cheap = {"PASSWORD_HASH_MEMORY_KIB": str(memory), "PASSWORD_HASH_TIME_COST": str(passes)}
    with pytest.raises(SettingsError, match=r"PASSWORD_HASH_MEMORY_KIB=.* OWASP"):
        settings_from_env({**PROD, **cheap})
    assert settings_from_env({**cheap, "LITEBASE_ENV": "dev"}).password_hash_memory_kib == memory


@pytest.mark.parametrize(("memory", "passes"), [(19_456, 2), (47_104, 1), (7_168, 5), (65_536, 3)])
def test_prod_takes_any_of_owasps_password_hash_costs_or_more(memory, passes):
    costs = {"PASSWORD_HASH_MEMORY_KIB": str(memory), "PASSWORD_HASH_TIME_COST": str(passes)}
    settings = settings_from_env({**PROD, **costs})
    assert (settings.password_hash_memory_kib, settings.password_hash_time_cost) == (
        memory,
        passes,
    )


def test_prod_may_print_mail_or_use_a_local_relay_when_told_so():
    console = settings_from_env(
        {**PROD, "MAIL_BACKEND": "console", "MAIL_ALLOW_CONSOLE_IN_PROD": "true"}
    )
    assert console.mail_backend == "console"
    relay = {**PROD, "SMTP_USERNAME": "", "SMTP_PASSWORD": "", "SMTP_SECURITY": "none"}
    assert settings_from_env(relay).smtp_security == "none"  # no login: nothing to leak


def test_dev_and_test_send_mail_to_the_console_with_links_to_the_api_url():
    for env in ("dev", "test"):
        settings = settings_from_env({"LITEBASE_ENV": env, "PUBLIC_URL": "http://127.0.0.1:9/"})
        assert (settings.mail_backend, settings.mail_app_url) == ("console", "http://127.0.0.1:9")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"MAIL_VERIFY_PATH": "verify"}, "MAIL_VERIFY_PATH must be a path"),
        ({"MAIL_SECURITY_PATH": "https://elsewhere.example/x"}, "MAIL_SECURITY_PATH must be a"),
        ({"APP_URL": "app.example.com"}, "APP_URL must be an http"),
        ({"APP_URL": "https://app.example.com/?x=1"}, "APP_URL must be an http"),
        ({"MAIL_TEMPLATES_DIR": "/no/such/folder"}, "MAIL_TEMPLATES_DIR"),
        ({"SMTP_SECURITY": "ssl"}, "SMTP_SECURITY"),
        ({"SMTP_TIMEOUT_SECONDS": "0"}, "SMTP_TIMEOUT_SECONDS"),
        ({"SMTP_PORT": "70000"}, "SMTP_PORT"),
    ],
)
def test_mail_settings_are_checked(environ, message):
    with pytest.raises(SettingsError, match=message):
        settings_from_env(environ)


def test_dev_and_test_run_with_the_dev_secret():
    for env in ("dev", "test"):
        assert settings_from_env({"LITEBASE_ENV": env}).secret_key == DEV_SECRET_KEY


def test_overrides_win_over_the_environment():
    settings = settings_from_env({"MAX_BODY_BYTES": "10"}, max_body_bytes=20)
    assert settings.max_body_bytes == 20


def test_every_setting_is_listed_in_env_example():
    from pathlib import Path

    from backend.config import _ENV_ALIASES, Settings

    example = (Path(__file__).parents[2] / ".env.example").read_text()
    listed = {
        line.split("=", 1)[0].lstrip("# ").strip() for line in example.splitlines() if "=" in line
    }
    for name in Settings.__struct_fields__:
        assert _ENV_ALIASES.get(name, name.upper()) in listed, name


def test_every_setting_is_explained_in_docs():
    from pathlib import Path

    from backend.config import _ENV_ALIASES, Settings

    docs = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    missing = [
        variable
        for variable in (
            _ENV_ALIASES.get(name, name.upper()) for name in Settings.__struct_fields__
        )
        if f"`{variable}`" not in docs
    ]
    assert missing == [], "docs/configuration.md has no row for these"


@pytest.mark.parametrize(
    "variable",
    [
        "PAGE_MAX_LIMIT",
        "REALTIME_SEND_QUEUE",
        "JOBS_MAX_ACTIVE_PER_USER",
        "RELAY_BATCH_SIZE",
        "REDIS_MAX_CONNECTIONS",
    ],
)
def test_limits_must_be_positive(variable):
    with pytest.raises(SettingsError, match=variable):
        settings_from_env({variable: "0"})


def test_the_default_page_cannot_exceed_the_largest():
    with pytest.raises(SettingsError, match="PAGE_DEFAULT_LIMIT"):
        settings_from_env({"PAGE_DEFAULT_LIMIT": "600"})


def test_uvicorn_gets_the_realtime_ping_settings_and_the_bounded_protocol():
    settings = settings_from_env(
        {
            "REALTIME_PING_INTERVAL_SECONDS": "7",
            "REALTIME_PING_TIMEOUT_SECONDS": "3",
            "HTTP_KEEPALIVE_SECONDS": "90",
        }
    )
    options = uvicorn_options(settings)
    assert (options["ws_ping_interval"], options["ws_ping_timeout"]) == (7.0, 3.0)
    assert options["timeout_keep_alive"] == 90
    assert import_from_string(options["ws"]) is BoundedWebSocketProtocol
    flags = uvicorn_flags(settings)
    assert flags[flags.index("--ws-ping-interval") + 1] == "7.0"
    assert flags[flags.index("--ws-ping-timeout") + 1] == "3.0"
    assert flags[flags.index("--timeout-keep-alive") + 1] == "90"


def test_idle_connections_outlive_a_clients_keepalive_by_default():
    # httpx drops an idle connection after 5 s; a server closing at 5 s races it (ReadError).
    assert settings_from_env({}).http_keepalive_seconds > 5
    with pytest.raises(SettingsError, match="HTTP_KEEPALIVE_SECONDS"):
        settings_from_env({"HTTP_KEEPALIVE_SECONDS": "0"})


def test_passkeys_default_to_localhost_outside_prod_and_off_in_prod():
    dev = settings_from_env({})
    assert dev.passkey_rp_id == "localhost"
    assert dev.passkey_origins("http://localhost:5173") == ["http://localhost:5173"]
    for elsewhere in ("http://127.0.0.1:5173", "https://evil.example", "http://localhost:1/x"):
        assert dev.passkey_origins(elsewhere) == []
    assert settings_from_env(PROD).passkey_rp_id == ""
    configured = settings_from_env(
        {
            **PROD,
            "WEBAUTHN_RP_ID": "example.com",
            "WEBAUTHN_ORIGINS": "https://example.com, https://app.example.com:8443",
        }
    )
    assert configured.passkey_rp_id == "example.com"
    assert configured.passkey_origins("http://localhost:5173") == [
        "https://example.com",
        "https://app.example.com:8443",
    ]


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"WEBAUTHN_RP_ID": "https://example.com"}, "WEBAUTHN_RP_ID must be a host name"),
        ({"WEBAUTHN_RP_ID": "example.com:443"}, "WEBAUTHN_RP_ID must be a host name"),
        ({"WEBAUTHN_RP_ID": "10.0.0.1"}, "WEBAUTHN_RP_ID must be a host name"),
        ({"WEBAUTHN_RP_ID": "example.com"}, "needs WEBAUTHN_ORIGINS"),
        ({"WEBAUTHN_ORIGINS": "https://example.com"}, "WEBAUTHN_ORIGINS needs WEBAUTHN_RP_ID"),
        (
            {"WEBAUTHN_RP_ID": "example.com", "WEBAUTHN_ORIGINS": "http://example.com"},
            "not an origin browsers allow",
        ),
        (
            {"WEBAUTHN_RP_ID": "example.com", "WEBAUTHN_ORIGINS": "https://example.com/app"},
            "not an origin browsers allow",
        ),
        (
            {"WEBAUTHN_RP_ID": "example.com", "WEBAUTHN_ORIGINS": "https://example.org"},
            "is not on WEBAUTHN_RP_ID",
        ),
        (
            {"WEBAUTHN_RP_ID": "example.com", "WEBAUTHN_ORIGINS": "https://badexample.com"},
            "is not on WEBAUTHN_RP_ID",
        ),
    ],
)
def test_a_relying_party_browsers_would_refuse_does_not_start(environ, complaint):
    with pytest.raises(SettingsError, match=complaint):
        settings_from_env({**PROD, **environ})


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"FILES_STORAGE": "s3"}, "FILES_S3_BUCKET"),
        (
            {"FILES_STORAGE": "s3", "FILES_S3_BUCKET": "b", "FILES_S3_ACCESS_KEY_ID": "k"},
            "FILES_S3_SECRET_ACCESS_KEY",
        ),
        (
            {"FILES_STORAGE": "s3", "FILES_S3_BUCKET": "b", "FILES_S3_KMS_KEY_ID": "k"},
            "FILES_S3_KMS_KEY_ID",
        ),
        ({"FILES_UPLOAD_PART_BYTES": "1048576"}, "FILES_UPLOAD_PART_BYTES"),
        ({"FILES_NAME_MAX_CHARS": "10"}, "FILES_NAME_MAX_CHARS"),
        ({"FILES_MAX_UPLOAD_BYTES": "0"}, "FILES_MAX_UPLOAD_BYTES"),
        ({"FILES_TOKEN_TTL_SECONDS": "0"}, "FILES_TOKEN_TTL_SECONDS"),
    ],
)
def test_file_settings_that_cannot_work_are_refused(environ, named):
    with pytest.raises(SettingsError, match=named):
        settings_from_env(environ)


def test_prod_refuses_sending_files_to_s3_in_the_clear():
    environ = {
        **PROD,
        "FILES_STORAGE": "s3",
        "FILES_S3_BUCKET": "b",
        "FILES_S3_ENDPOINT": "http://minio:9000",
    }
    with pytest.raises(SettingsError, match="FILES_S3_ENDPOINT"):
        settings_from_env(environ)
    assert (
        settings_from_env({**environ, "FILES_S3_ENDPOINT": "https://minio:9000"}).files_storage
        == "s3"
    )
