"""The `litebase` command's tools for developers (registered on it in backend/cli.py): checking
prompt templates and mail templates, generating client types, scaffolding a collection."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from backend.config import Settings, SettingsError, get_settings


def cli_settings() -> Settings:
    """The settings, or the command's error naming what is wrong with them."""
    try:
        return get_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def prompts() -> None:
    """Prompt templates (PROMPTS_DIR)."""


@prompts.command("check")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The prompts directory [PROMPTS_DIR, prompts].",
)
@click.option(
    "--models",
    "models_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The gateway's models.yaml to check each prompt's model against [LITEBASE_MODELS].",
)
def prompts_check(directory: Path | None, models_file: Path | None) -> None:
    """Load every prompt: YAML, fields, input schema, templates and the variables they use,
    and each prompt's model against the gateway's aliases (when any are configured)."""
    import msgspec

    from backend.ai.catalog import CatalogError, load_catalog
    from backend.ai.prompts import check_directory, unknown_models

    settings = cli_settings()
    if models_file is not None:
        settings = msgspec.structs.replace(settings, models_file=str(models_file))
    folder = directory or Path(settings.prompts_dir)
    found, findings = check_directory(folder)
    try:
        aliases = load_catalog(settings).aliases
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from exc
    if aliases:
        wrong = unknown_models(found, aliases)
        findings.extend(wrong)
        at_fault = {finding.path for finding in wrong}
        found = {name: p for name, p in found.items() if p.path not in at_fault}
    else:
        click.echo("note   models not checked: no LITEBASE_MODELS or OPENAI_* settings")
    for prompt in found.values():
        click.echo(f"ok     {prompt.name} v{prompt.version} ({prompt.path})")
    for finding in findings:
        click.echo(f"error  {finding}")
    click.echo(f"{len(found)} prompts ok, {len(findings)} problems in {folder}")
    if findings:
        sys.exit(1)


@click.group()
def mail() -> None:
    """Mail templates (backend/mail/templates, MAIL_TEMPLATES_DIR)."""


@mail.command("check")
def mail_check() -> None:
    """Render every mail in every language with sample values (the worker does this before it
    starts); exit 1 naming each template that does not render."""
    from backend.mail.compose import check_templates

    rendered, problems = check_templates(cli_settings())
    for problem in problems:
        click.echo(f"error  {problem}")
    click.echo(f"{rendered} mails ok, {len(problems)} problems")
    if problems:
        sys.exit(1)


@click.group()
def gen() -> None:
    """Write code from the collections."""


@gen.command("types")
@click.option("--lang", type=click.Choice(["ts", "py"]), default="ts", show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Default: stdout."
)
def gen_types(lang: str, out: Path | None) -> None:
    """Types of every collection's records, create and update bodies and relations: a
    `Database` type for `createClient<Database>()` (ts), TypedDicts for the Python client (py)."""
    from backend.collections.spec import CollectionRegistry
    from backend.collections.typegen import python, typescript

    registry = CollectionRegistry.discover()
    text = typescript(registry) if lang == "ts" else python(registry)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        click.echo(f"wrote {out}", err=True)


@click.group()
def new() -> None:
    """Write new code from a template."""


@new.command("collection")
@click.argument("name")
@click.option("--field", "fields", multiple=True, metavar="NAME:TYPE[?]", help="Repeat per field.")
@click.option(
    "--root",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=Path(),
    help="The project root (default: here).",
)
def new_collection(name: str, fields: tuple[str, ...], root: Path) -> None:
    """A collection module, its migration and a test. Types: str text int float bool uuid
    datetime tags json; NAME:TYPE? makes a field optional."""
    from alembic.script import ScriptDirectory

    from backend.collections.scaffold import ScaffoldError, write_collection

    head = ScriptDirectory(str(root / "backend" / "db" / "migrations")).get_current_head()
    try:
        written = write_collection(root, name, list(fields), head)
    except ScaffoldError as exc:
        raise click.ClickException(str(exc)) from exc
    for path in (written.module, written.migration, written.test):
        click.echo(f"wrote {path}")
    click.echo("next: litebase migrate, then it is served at /collections/" + name + "/records")
