"""Providers and model aliases from models.yaml (LITEBASE_MODELS), or the OPENAI_* shortcut.

An alias is what callers name in ``model``; it says which provider serves it, the upstream
model, its timeout and retries, and the aliases to fall back to, in order. Base URLs and keys
come only from here (operator config), never from a request. The file is checked whole at
startup, so a typo stops the process with a message naming the place at fault.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import msgspec
import yaml

from backend.config import Settings, SettingsError
from backend.lib.upstream import NO_KEY, OPENAI_BASE_URL

SHORTCUT_PROVIDER = "openai"
MAX_RETRIES = 10
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,127}")


class CatalogError(SettingsError):
    """models.yaml (or the OPENAI_* shortcut) describes providers the gateway cannot use."""


class _ProviderEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    base_url: str
    api_key: str = ""
    api_key_env: str = ""


class _AliasEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    provider: str
    model: str
    timeout_seconds: float | None = None
    retries: int | None = None
    fallbacks: list[str] = []


class _ModelsFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    providers: dict[str, _ProviderEntry] = {}
    models: dict[str, _AliasEntry] = {}


@dataclass(frozen=True)
class Provider:
    name: str
    base_url: str
    api_key: str

    def __repr__(self) -> str:  # never print a key
        return f"Provider(name={self.name!r}, base_url={self.base_url!r})"


@dataclass(frozen=True)
class ModelAlias:
    name: str
    provider: str
    model: str
    timeout_seconds: float
    retries: int
    fallbacks: tuple[str, ...]
    # This alias, then its fallbacks depth-first (each fallback's own fallbacks after it).
    chain: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalog:
    providers: Mapping[str, Provider]
    aliases: Mapping[str, ModelAlias]

    def alias(self, name: str) -> ModelAlias | None:
        return self.aliases.get(name)

    def attempts(self, name: str) -> tuple[ModelAlias, ...]:
        """The aliases to try for ``name``, in order (empty when ``name`` is unknown)."""
        alias = self.aliases.get(name)
        return tuple(self.aliases[step] for step in alias.chain) if alias else ()


def _check_base_url(where: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CatalogError(f"{where}.base_url must be an http(s) URL with a host, not {url!r}")
    return url.rstrip("/")


def _provider(where: str, name: str, entry: _ProviderEntry, environ: Mapping[str, str]) -> Provider:
    if not _NAME.fullmatch(name):
        raise CatalogError(f"{where}: {name!r} is not a valid provider name")
    if entry.api_key and entry.api_key_env:
        raise CatalogError(f"{where}: give api_key or api_key_env, not both")
    key = entry.api_key
    if entry.api_key_env:
        key = environ.get(entry.api_key_env, "")
        if not key:
            raise CatalogError(
                f"{where}.api_key_env: the environment variable {entry.api_key_env} is not set"
            )
    return Provider(name, _check_base_url(where, entry.base_url), key or NO_KEY)


def _alias(where: str, name: str, entry: _AliasEntry, settings: Settings) -> ModelAlias:
    if not _NAME.fullmatch(name):
        raise CatalogError(f"{where}: {name!r} is not a valid model alias")
    timeout = entry.timeout_seconds
    if timeout is None:
        timeout = settings.ai_timeout_seconds
    retries = settings.ai_retries if entry.retries is None else entry.retries
    if timeout <= 0:
        raise CatalogError(f"{where}.timeout_seconds must be greater than 0")
    if not 0 <= retries <= MAX_RETRIES:
        raise CatalogError(f"{where}.retries must be between 0 and {MAX_RETRIES}")
    if not entry.model.strip():
        raise CatalogError(f"{where}.model must name the upstream model")
    if len(set(entry.fallbacks)) != len(entry.fallbacks):
        raise CatalogError(f"{where}.fallbacks names an alias twice")
    if name in entry.fallbacks:
        raise CatalogError(f"{where}.fallbacks: an alias cannot fall back to itself")
    return ModelAlias(name, entry.provider, entry.model, timeout, retries, tuple(entry.fallbacks))


def _chains(aliases: dict[str, ModelAlias], source: str) -> dict[str, ModelAlias]:
    """Give each alias its attempt order, refusing unknown fallbacks and cycles."""
    for alias in aliases.values():
        for fallback in alias.fallbacks:
            if fallback not in aliases:
                raise CatalogError(
                    f"{source}: models.{alias.name}.fallbacks: unknown alias {fallback!r}"
                )

    def walk(name: str, path: tuple[str, ...], order: list[str]) -> None:
        if name in path:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise CatalogError(f"{source}: fallback cycle {cycle}")
        if name not in order:
            order.append(name)
        for fallback in aliases[name].fallbacks:
            walk(fallback, (*path, name), order)

    chained = {}
    for name, alias in aliases.items():
        order: list[str] = []
        walk(name, (), order)
        chained[name] = ModelAlias(**{**alias.__dict__, "chain": tuple(order)})
    return chained


def _shortcut_provider(settings: Settings) -> Provider | None:
    if not (settings.openai_api_key or settings.openai_base_url):
        return None
    url = _check_base_url("OPENAI_BASE_URL", settings.openai_base_url or OPENAI_BASE_URL)
    return Provider(SHORTCUT_PROVIDER, url, settings.openai_api_key or NO_KEY)


def parse_models(
    text: str, settings: Settings, *, source: str = "models.yaml", environ: Mapping[str, str]
) -> Catalog:
    """Build the catalog from the text of a models file (see models.example.yaml)."""
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise CatalogError(f"{source} is not valid YAML: {exc}") from exc
    try:
        parsed = msgspec.convert(raw, _ModelsFile)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$.")
        place = f" at {where.rstrip('`')}" if where else ""
        raise CatalogError(f"{source}{place}: {message}") from exc
    providers = {
        name: _provider(f"{source}: providers.{name}", name, entry, environ)
        for name, entry in parsed.providers.items()
    }
    shortcut = _shortcut_provider(settings)
    if shortcut and SHORTCUT_PROVIDER not in providers:
        providers[SHORTCUT_PROVIDER] = shortcut
    aliases = {}
    for name, entry in parsed.models.items():
        where = f"{source}: models.{name}"
        if entry.provider not in providers:
            known = ", ".join(sorted(providers)) or "none"
            raise CatalogError(
                f"{where}.provider: unknown provider {entry.provider!r} (defined: {known})"
            )
        aliases[name] = _alias(where, name, entry, settings)
    return Catalog(providers, _chains(aliases, source))


def load_catalog(settings: Settings, environ: Mapping[str, str] | None = None) -> Catalog:
    """The catalog the settings describe: LITEBASE_MODELS, else the OPENAI_* shortcut, else
    empty (the gateway then lists no models and answers 404 for any)."""
    environ = os.environ if environ is None else environ
    if settings.models_file:
        path = Path(settings.models_file)
        try:
            text = path.read_text()
        except OSError as exc:
            raise CatalogError(f"LITEBASE_MODELS: cannot read {path}: {exc.strerror}") from exc
        return parse_models(text, settings, source=str(path), environ=environ)
    shortcut = _shortcut_provider(settings)
    if shortcut is None:
        return Catalog({}, {})
    aliases = {
        name: ModelAlias(
            name,
            SHORTCUT_PROVIDER,
            name,
            settings.ai_timeout_seconds,
            settings.ai_retries,
            (),
            (name,),
        )
        for name in settings.openai_models
    }
    return Catalog({SHORTCUT_PROVIDER: shortcut}, aliases)
