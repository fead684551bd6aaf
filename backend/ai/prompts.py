"""Prompt templates: YAML files in PROMPTS_DIR, validated inputs, messages rendered in a sandbox.

A prompt file names a model alias of the gateway, the parameters of the chat call, a JSON
Schema for its variables and messages whose content is Jinja2. Templates render in Jinja2's
immutable sandbox with ``StrictUndefined``: they cannot reach Python objects' internals, cannot
mutate what they are given, and a variable the caller did not send is an error, never an empty
string sent to the model. Nothing here runs at import; ``load_library`` reads the directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jsonschema_rs
import msgspec
import yaml
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError, meta
from jinja2.exceptions import SecurityError
from jinja2.nodes import Template as TemplateNode
from jinja2.sandbox import ImmutableSandboxedEnvironment

from backend.errors import Broken, Invalid, NotFound

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
# The gateway owns these keys of a chat call; a prompt's parameters never set them.
RESERVED_PARAMETERS = frozenset({"model", "messages", "stream", "stream_options"})
JSON_FORMATS = frozenset({"json_object", "json_schema"})

# The chat parameters a prompt commonly sets, typed, so a wrong value is found by
# `litebase prompts check` rather than by the provider; others pass through unchecked.
_PARAMETERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "top_p": {"type": "number", "minimum": 0, "maximum": 1},
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "n": {"type": "integer", "minimum": 1},
        "seed": {"type": "integer"},
        "presence_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "frequency_penalty": {"type": "number", "minimum": -2, "maximum": 2},
        "stop": {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "maxItems": 4},
            ]
        },
        "response_format": {
            "type": "object",
            "properties": {"type": {"enum": ["text", "json_object", "json_schema"]}},
            "required": ["type"],
        },
    },
}


class MessageSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    role: Literal["system", "developer", "user", "assistant"]
    content: str


class PromptSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A prompt file as written (see docs/ai.md, "Prompts")."""

    name: str
    version: str
    model: str
    messages: list[MessageSpec]
    description: str = ""
    parameters: dict[str, Any] = {}
    input_schema: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object"})


class PromptError(ValueError):
    """A prompt file that cannot be used: the message names the file and the reason."""


@dataclass(frozen=True)
class Finding:
    """One thing wrong with one prompt file, as `litebase prompts check` reports it."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class Prompt:
    name: str
    version: str
    description: str
    model: str
    parameters: Mapping[str, Any]
    input_schema: Mapping[str, Any]
    path: Path
    _roles: tuple[str, ...] = field(repr=False)
    _templates: tuple[Any, ...] = field(repr=False)
    _validator: jsonschema_rs.Validator = field(repr=False)

    @property
    def wants_json(self) -> bool:
        """Whether the parameters ask the model for a JSON answer (response_format)."""
        response_format = self.parameters.get("response_format")
        return isinstance(response_format, Mapping) and response_format.get("type") in JSON_FORMATS

    def field_errors(self, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every way ``variables`` break the input schema, one entry per field at fault."""
        errors = []
        for error in self._validator.iter_errors(dict(variables)):
            path = ["variables", *(str(part) for part in error.instance_path)]
            details = error.kind.as_dict()
            if error.kind.name == "required":
                path.append(str(details["property"]))
            elif error.kind.name == "additionalProperties":
                for unexpected in details.get("unexpected", []):
                    errors.append(_field_error([*path, str(unexpected)], "is not expected"))
                continue
            errors.append(_field_error(path, error.message))
        return errors

    def render(self, variables: Mapping[str, Any]) -> list[dict[str, str]]:
        """The chat messages for these variables; 422 naming the fields if they don't fit."""
        errors = self.field_errors(variables)
        if errors:
            raise Invalid(
                f"The variables do not fit the prompt {self.name}'s input schema",
                errors=errors,
            )
        context = {**self._defaults(), **variables}
        try:
            return [
                {"role": role, "content": template.render(context).strip()}
                for role, template in zip(self._roles, self._templates, strict=True)
            ]
        except UndefinedError as exc:
            # The schema allowed it, the template needs it (say, an optional field read
            # without `is defined`): the caller can fix it by sending it.
            raise Invalid(
                f"The prompt {self.name} needs a value the variables do not give: {exc.message}",
                errors=[_field_error(["variables"], exc.message or "undefined")],
            ) from exc
        except SecurityError as exc:
            raise Broken(f"The prompt {self.name} did something its sandbox refuses") from exc
        except (TemplateError, ArithmeticError, TypeError, ValueError) as exc:
            # A template bug (say, arithmetic on a string): the operator fixes the file.
            raise Broken(f"The prompt {self.name} failed to render: {exc}") from exc

    def chat_body(self, variables: Mapping[str, Any]) -> dict[str, Any]:
        """The /v1/chat/completions body for these variables (without ``stream``)."""
        return {"model": self.model, "messages": self.render(variables), **self.parameters}

    def _defaults(self) -> dict[str, Any]:
        properties = self.input_schema.get("properties")
        if not isinstance(properties, Mapping):
            return {}
        return {
            name: spec["default"]
            for name, spec in properties.items()
            if isinstance(spec, Mapping) and "default" in spec
        }


def _field_error(path: list[str], message: str) -> dict[str, Any]:
    return {"field": ".".join(path), "message": message, "source": "body"}


def sandbox() -> ImmutableSandboxedEnvironment:
    """The one environment prompts render in: sandboxed, immutable, strict, plain text."""
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


def _declared(input_schema: Mapping[str, Any]) -> set[str]:
    properties = input_schema.get("properties")
    return set(properties) if isinstance(properties, Mapping) else set()


def _line(exc: TemplateSyntaxError) -> str:
    return f" (line {exc.lineno} of the template)" if exc.lineno else ""


def parse_prompt(
    path: Path, text: str, environment: ImmutableSandboxedEnvironment
) -> tuple[Prompt | None, list[str]]:
    """A prompt from a file's text, and every reason it is not usable (empty if it is)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return None, [f"not valid YAML: {exc}".replace("\n", " ")]
    try:
        spec = msgspec.convert(raw, PromptSpec, strict=True)
    except msgspec.ValidationError as exc:
        return None, [f"not a prompt: {exc}"]
    reasons: list[str] = []
    if not re.fullmatch(NAME_PATTERN, spec.name):
        reasons.append(f"name {spec.name!r} must match {NAME_PATTERN}")
    if not spec.version.strip():
        reasons.append("version is empty")
    if not spec.model.strip():
        reasons.append("model is empty (name a model alias of the gateway)")
    if not spec.messages:
        reasons.append("messages is empty")
    reserved = sorted(RESERVED_PARAMETERS & set(spec.parameters))
    if reserved:
        reasons.append(f"parameters may not set {', '.join(reserved)}")
    for error in jsonschema_rs.validator_for(_PARAMETERS_SCHEMA).iter_errors(spec.parameters):
        where = ".".join(str(part) for part in error.instance_path)
        reasons.append(f"parameters{'.' + where if where else ''}: {error.message}")
    validator: jsonschema_rs.Validator | None = None
    try:
        jsonschema_rs.meta.validate(spec.input_schema)
        # Offline: a $ref to a URL is never fetched; a schema names what it checks itself.
        validator = jsonschema_rs.validator_for(spec.input_schema, offline=True)
    except (jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError, ValueError) as exc:
        reasons.append(f"input_schema is not a valid JSON Schema: {exc}".replace("\n", " "))
    if spec.input_schema.get("type") != "object":
        reasons.append('input_schema must have "type": "object" (variables are named)')
    declared = _declared(spec.input_schema)
    templates = []
    for number, message in enumerate(spec.messages, start=1):
        try:
            tree: TemplateNode = environment.parse(message.content)
        except TemplateSyntaxError as exc:
            reasons.append(f"messages[{number}] ({message.role}): {exc.message}{_line(exc)}")
            continue
        undeclared = sorted(meta.find_undeclared_variables(tree) - declared)
        if undeclared:
            reasons.append(
                f"messages[{number}] ({message.role}) uses {', '.join(undeclared)}, "
                "not declared in input_schema.properties"
            )
        templates.append(environment.from_string(tree))
    if reasons or validator is None:
        return None, reasons
    return (
        Prompt(
            name=spec.name,
            version=spec.version,
            description=spec.description.strip(),
            model=spec.model,
            parameters=dict(spec.parameters),
            input_schema=dict(spec.input_schema),
            path=path,
            _roles=tuple(message.role for message in spec.messages),
            _templates=tuple(templates),
            _validator=validator,
        ),
        [],
    )


class PromptLibrary:
    """The prompts of one directory, by name."""

    def __init__(self, prompts: Mapping[str, Prompt], directory: Path) -> None:
        self._prompts = dict(prompts)
        self.directory = directory

    def __iter__(self) -> Iterator[Prompt]:
        return iter(sorted(self._prompts.values(), key=lambda prompt: prompt.name))

    def __len__(self) -> int:
        return len(self._prompts)

    def get(self, name: str) -> Prompt | None:
        return self._prompts.get(name)

    def require(self, name: str) -> Prompt:
        """The prompt named ``name``, or 404."""
        prompt = self._prompts.get(name)
        if prompt is None:
            raise NotFound(f"No prompt named {name!r}", code="unknown_prompt")
        return prompt


def prompt_files(directory: Path) -> list[Path]:
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def check_directory(directory: Path) -> tuple[dict[str, Prompt], list[Finding]]:
    """Every usable prompt of ``directory`` and every finding about the others."""
    environment = sandbox()
    prompts: dict[str, Prompt] = {}
    findings: list[Finding] = []
    if not directory.is_dir():
        return prompts, [Finding(directory, "is not a directory (PROMPTS_DIR)")]
    for path in prompt_files(directory):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            findings.append(Finding(path, f"cannot be read: {exc}"))
            continue
        prompt, reasons = parse_prompt(path, text, environment)
        findings.extend(Finding(path, reason) for reason in reasons)
        if prompt is None:
            continue
        if prompt.name in prompts:
            findings.append(
                Finding(path, f"name {prompt.name!r} is taken by {prompts[prompt.name].path.name}")
            )
            continue
        prompts[prompt.name] = prompt
    return prompts, findings


def unknown_models(prompts: Mapping[str, Prompt], aliases: Collection[str]) -> list[Finding]:
    """A finding for each prompt whose ``model`` is not one of the gateway's ``aliases``."""
    known = ", ".join(sorted(aliases)) or "none"
    return [
        Finding(prompt.path, f"model {prompt.model!r} is not a model alias (known: {known})")
        for prompt in prompts.values()
        if prompt.model not in aliases
    ]


def load_library(directory: Path) -> PromptLibrary:
    """The prompts in ``directory`` (none if it does not exist); PromptError if any is broken."""
    if not directory.exists():
        return PromptLibrary({}, directory)
    prompts, findings = check_directory(directory)
    if findings:
        raise PromptError("; ".join(str(finding) for finding in findings))
    return PromptLibrary(prompts, directory)


def parse_json_output(text: str) -> Any:
    """A JSON answer of a model, tolerating the ```json fences some models add; None if not JSON."""
    stripped = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", stripped, flags=re.DOTALL)
    if fenced:
        stripped = fenced.group(1)
    try:
        return json.loads(stripped)
    except ValueError:
        return None
