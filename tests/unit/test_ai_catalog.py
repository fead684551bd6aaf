"""models.yaml parsing, the OPENAI_* shortcut, and fallback order."""

from pathlib import Path

import pytest

from backend.ai.catalog import CatalogError, load_catalog, parse_models
from backend.config import settings_from_env

ROOT = Path(__file__).parents[2]
SETTINGS = settings_from_env({})

GOOD = """
providers:
  one: {base_url: "http://127.0.0.1:9/v1/", api_key: k1}
  two: {base_url: "https://models.example/v1", api_key_env: TWO_KEY}
models:
  a: {provider: one, model: up-a, fallbacks: [b, c]}
  b: {provider: two, model: up-b, timeout_seconds: 5, retries: 3, fallbacks: [d]}
  c: {provider: one, model: up-c, fallbacks: [d]}
  d: {provider: two, model: up-d}
"""


def parse(text: str, environ=None, settings=SETTINGS):
    return parse_models(text, settings, environ=environ or {"TWO_KEY": "k2"})


def test_aliases_providers_and_defaults():
    catalog = parse(GOOD)
    assert catalog.providers["one"].base_url == "http://127.0.0.1:9/v1"
    assert catalog.providers["two"].api_key == "k2"
    assert "k2" not in repr(catalog.providers["two"])
    b = catalog.aliases["b"]
    assert (b.provider, b.model, b.timeout_seconds, b.retries) == ("two", "up-b", 5, 3)
    a = catalog.aliases["a"]
    assert (a.timeout_seconds, a.retries) == (SETTINGS.ai_timeout_seconds, SETTINGS.ai_retries)


def test_fallbacks_run_in_order_depth_first_without_repeats():
    catalog = parse(GOOD)
    assert [alias.name for alias in catalog.attempts("a")] == ["a", "b", "d", "c"]
    assert [alias.name for alias in catalog.attempts("d")] == ["d"]
    assert catalog.attempts("nope") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: {a: {provider: ghost, model: m}}", "models.a.provider: unknown provider 'ghost'"),
        (
            "providers: {p: {base_url: 'http://h/v1'}}\n"
            "models: {a: {provider: p, model: m, fallbacks: [b]}, b: {provider: p, model: m,"
            " fallbacks: [a]}}",
            "fallback cycle a -> b -> a",
        ),
        (
            "providers: {p: {base_url: 'http://h/v1'}}\n"
            "models: {a: {provider: p, model: m, fallbacks: [a]}}",
            "cannot fall back to itself",
        ),
        (
            "providers: {p: {base_url: 'http://h/v1'}}\n"
            "models: {a: {provider: p, model: m, fallbacks: [zz]}}",
            "unknown alias 'zz'",
        ),
        ("providers: {p: {base_url: 'ftp://h/v1'}}", "base_url must be an http(s) URL"),
        ("providers: {p: {base_url: 'http://h', api_key_env: NOPE}}", "NOPE is not set"),
        ("providers: {p: {base_url: 'http://h', api_key: x, api_key_env: X}}", "not both"),
        (
            "providers: {p: {base_url: 'http://h'}}\nmodels: {a: {provider: p, model: m,"
            " timeout_seconds: 0}}",
            "timeout_seconds must be greater than 0",
        ),
        (
            "providers: {p: {base_url: 'http://h'}}\nmodels: {a: {provider: p, model: m,"
            " retries: 11}}",
            "retries must be between 0 and 10",
        ),
        ("providers: {p: {base_url: 'http://h', colour: red}}", "unknown field `colour`"),
        ("models: [", "not valid YAML"),
    ],
)
def test_bad_files_are_refused_naming_the_place(text, message):
    with pytest.raises(CatalogError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


def test_openai_shortcut_defines_a_provider_and_aliases():
    settings = settings_from_env(
        {"OPENAI_API_KEY": "sk-x", "OPENAI_MODELS": "gpt-4o-mini, text-embedding-3-small"}
    )
    catalog = load_catalog(settings, environ={})
    assert catalog.providers["openai"].base_url == "https://api.openai.com/v1"
    assert catalog.providers["openai"].api_key == "sk-x"
    assert sorted(catalog.aliases) == ["gpt-4o-mini", "text-embedding-3-small"]
    assert catalog.aliases["gpt-4o-mini"].model == "gpt-4o-mini"


def test_a_file_may_use_the_shortcut_provider():
    settings = settings_from_env({"OPENAI_BASE_URL": "http://127.0.0.1:8080/v1"})
    catalog = parse("models: {chat: {provider: openai, model: local}}", settings=settings)
    assert catalog.providers["openai"].base_url == "http://127.0.0.1:8080/v1"


def test_no_file_and_no_shortcut_is_an_empty_catalog():
    assert load_catalog(SETTINGS, environ={}).aliases == {}


def test_litebase_models_names_the_file(tmp_path):
    path = tmp_path / "models.yaml"
    path.write_text(GOOD)
    settings = settings_from_env({"LITEBASE_MODELS": str(path)})
    assert sorted(load_catalog(settings, environ={"TWO_KEY": "k"}).aliases) == list("abcd")
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(settings_from_env({"LITEBASE_MODELS": str(tmp_path / "missing.yaml")}))


def test_the_example_file_is_valid():
    catalog = parse((ROOT / "models.example.yaml").read_text(), environ={"OPENAI_API_KEY": "k"})
    assert [a.name for a in catalog.attempts("gpt-4o")] == ["gpt-4o", "gpt-4o-mini", "local-llama"]


def test_gateway_settings_come_from_the_environment():
    settings = settings_from_env(
        {
            "LITEBASE_MODELS": "/etc/models.yaml",
            "AI_USER_TOKENS_PER_PERIOD": "5000",
            "AI_BUDGET_PERIOD": "day",
            "OPENAI_MODELS": "a,b",
        }
    )
    assert settings.models_file == "/etc/models.yaml"
    assert settings.ai_user_tokens_per_period == 5000
    assert settings.ai_budget_period == "day"
    assert settings.openai_models == ("a", "b")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"AI_RETRIES": "11"}, "AI_RETRIES"),
        ({"AI_TIMEOUT_SECONDS": "0"}, "AI_TIMEOUT_SECONDS"),
        ({"AI_USER_TOKENS_PER_PERIOD": "-1"}, "AI_USER_TOKENS_PER_PERIOD"),
        ({"AI_MAX_BODY_BYTES": "0"}, "AI_MAX_BODY_BYTES"),
        ({"AI_BUDGET_PERIOD": "year"}, "AI_BUDGET_PERIOD"),
        ({"AI_USAGE_FLUSH_SECONDS": "0"}, "AI_USAGE_FLUSH_SECONDS"),
        ({"AI_BUDGET_SYNC_SECONDS": "0"}, "AI_BUDGET_SYNC_SECONDS"),
    ],
)
def test_bad_gateway_settings_are_refused(environ, message):
    from backend.config import SettingsError

    with pytest.raises(SettingsError, match=message):
        settings_from_env(environ)
