"""Prompt library: shipped prompts, input validation, the sandbox, `litebase prompts check`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from backend.ai.prompts import (
    PromptError,
    check_directory,
    load_library,
    parse_json_output,
    parse_prompt,
    sandbox,
)
from backend.cli import main
from backend.errors import Broken, Invalid, NotFound, TooMany

SHIPPED = Path(__file__).parents[2] / "prompts"

GOOD = """
name: greet
version: "2"
description: Say hello.
model: gpt-4o-mini
parameters: {temperature: 0.5, max_tokens: 20}
input_schema:
  type: object
  additionalProperties: false
  required: [who]
  properties:
    who: {type: string, minLength: 1}
    mood: {enum: [warm, dry], default: warm}
messages:
  - role: system
    content: You greet people, {{ mood }}ly.
  - role: user
    content: Greet {{ who }}.
"""


def _parse(text: str):
    return parse_prompt(Path("p.yaml"), textwrap.dedent(text), sandbox())


def _good():
    prompt, reasons = _parse(GOOD)
    assert reasons == [] and prompt is not None
    return prompt


def test_a_prompt_renders_its_messages_with_defaults_and_parameters():
    body = _good().chat_body({"who": "Ada"})
    assert body == {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You greet people, warmly."},
            {"role": "user", "content": "Greet Ada."},
        ],
        "temperature": 0.5,
        "max_tokens": 20,
    }


def test_bad_variables_are_422_naming_every_field_at_fault():
    prompt = _good()
    with pytest.raises(Invalid) as caught:
        prompt.render({"mood": "angry", "extra": 1})

    fields = {error["field"] for error in caught.value.errors}
    assert fields == {"variables.who", "variables.mood", "variables.extra"}
    nested = load_library(SHIPPED).require("rag_answer")
    errors = nested.field_errors({"question": "q", "context": [{"n": 0, "text": "t"}, {"n": 1}]})
    assert {e["field"] for e in errors} == {"variables.context.0.n", "variables.context.1.text"}


@pytest.mark.parametrize(
    "template",
    [
        "{{ who.__class__.__mro__ }}",
        "{{ who.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ items.append(1) }}",
    ],
)
def test_templates_cannot_reach_python(template):
    prompt, reasons = _parse(
        f"""
        name: probe
        version: "1"
        model: m
        input_schema:
          type: object
          properties: {{who: {{type: string}}, items: {{type: array}}}}
        messages: [{{role: user, content: "{template}"}}]
        """
    )
    assert reasons == [] and prompt is not None
    with pytest.raises(Broken) as caught:
        prompt.render({"who": "x", "items": [1]})

    assert "sandbox" in caught.value.detail


def test_a_template_needing_an_optional_variable_not_sent_is_422():
    prompt, _ = _parse(
        """
        name: optional
        version: "1"
        model: m
        input_schema: {type: object, properties: {topic: {type: string}}}
        messages: [{role: user, content: "About {{ topic }}"}]
        """
    )
    assert prompt is not None
    with pytest.raises(Invalid) as caught:
        prompt.render({})

    assert "topic" in caught.value.detail


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("name: [unclosed", "not valid YAML"),
        ("name: x\nversion: '1'\nmodel: m\nmessages: []\nextra: 1", "unknown field `extra`"),
        ("name: x\nversion: 1\nmodel: m\nmessages: []", "Expected `str`, got `int`"),
        ("name: Bad-Name\nversion: '1'\nmodel: m\nmessages: [{role: user, content: hi}]", "name"),
        (
            "name: x\nversion: '1'\nmodel: m\nparameters: {stream: true}\n"
            "messages: [{role: user, content: hi}]",
            "parameters may not set stream",
        ),
        (
            "name: x\nversion: '1'\nmodel: m\nparameters: {temperature: 7}\n"
            "messages: [{role: user, content: hi}]",
            "parameters.temperature",
        ),
        (
            "name: x\nversion: '1'\nmodel: m\ninput_schema: {type: object, minProperties: -1}\n"
            "messages: [{role: user, content: hi}]",
            "input_schema is not a valid JSON Schema",
        ),
        (
            "name: x\nversion: '1'\nmodel: m\nmessages: [{role: user, content: '{% if %}'}]",
            "messages[1] (user)",
        ),
        (
            "name: x\nversion: '1'\nmodel: m\ninput_schema: {type: object}\n"
            "messages: [{role: user, content: '{{ question }}'}]",
            "uses question, not declared in input_schema.properties",
        ),
        ("name: x\nversion: '1'\nmodel: m\nmessages: [{role: tool, content: hi}]", "role"),
    ],
)
def test_broken_prompts_say_why(text, reason):
    prompt, reasons = _parse(text)
    assert prompt is None
    assert any(reason in found for found in reasons), reasons


def test_variables_set_inside_a_template_or_builtin_are_not_undeclared():
    prompt, reasons = _parse(
        """
        name: loops
        version: "1"
        model: m
        input_schema: {type: object, properties: {items: {type: array}}}
        messages:
          - role: user
            content: "{% set sep = ', ' %}{% for i in items %}{{ loop.index }}{{ sep }}{% endfor %}{{ range(2) | list }}"
        """  # noqa: E501
    )
    assert reasons == [] and prompt is not None
    assert prompt.render({"items": ["a", "b"]})[0]["content"] == "1, 2, [0, 1]"


def test_the_shipped_prompts_load_and_render():
    library = load_library(SHIPPED)
    assert {p.name for p in library} >= {"rag_answer", "summarize", "extract_json"}
    rag = library.require("rag_answer").render(
        {
            "question": "What is lava?",
            "context": [{"n": 1, "text": "Lava is molten rock."}, {"n": 2, "text": "Violins."}],
        }
    )
    assert "[1]" in rag[0]["content"]  # asks for citations
    assert "[1] Lava is molten rock." in rag[1]["content"]
    assert "[2] Violins." in rag[1]["content"]
    assert rag[1]["content"].endswith("Question: What is lava?")
    bullets = library.require("summarize").render({"text": "A long text.", "style": "bullets"})
    assert "at most 3 bullet points" in bullets[1]["content"]
    assert "A long text." in bullets[1]["content"]
    extract = library.require("extract_json")
    assert extract.wants_json and not library.require("summarize").wants_json
    schema = {"type": "object", "properties": {"age": {"type": "integer"}}}
    system = extract.render({"text": "Bob is 42", "schema": schema})[0]["content"]
    assert '{"properties": {"age": {"type": "integer"}}, "type": "object"}' in system


def test_a_library_refuses_a_broken_file_naming_it(tmp_path):
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad.yaml").write_text("name: [")
    with pytest.raises(PromptError, match=r"bad\.yaml: not valid YAML"):
        load_library(tmp_path)
    assert len(load_library(tmp_path / "missing")) == 0  # no directory: no prompts


def test_two_files_with_one_name_are_a_finding(tmp_path):
    (tmp_path / "a.yaml").write_text(GOOD)
    (tmp_path / "b.yaml").write_text(GOOD)
    found, findings = check_directory(tmp_path)
    assert list(found) == ["greet"]
    assert [str(f) for f in findings] == [f"{tmp_path / 'b.yaml'}: name 'greet' is taken by a.yaml"]


def test_an_unknown_prompt_is_404(tmp_path):
    with pytest.raises(NotFound):
        load_library(tmp_path).require("nope")


def test_prompts_check_reports_undeclared_variables_and_exits_1(tmp_path):
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "typo.yaml").write_text(
        GOOD.replace("name: greet", "name: typo").replace("{{ who }}", "{{ whom }}")
    )
    result = CliRunner().invoke(main, ["prompts", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "ok     greet v2" in result.output
    assert "typo.yaml: messages[2] (user) uses whom, not declared" in result.output
    assert "1 prompts ok, 1 problems" in result.output
    (tmp_path / "typo.yaml").unlink()
    result = CliRunner().invoke(main, ["prompts", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output


def test_the_shipped_prompts_pass_the_check():
    result = CliRunner().invoke(main, ["prompts", "check", "--dir", str(SHIPPED)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ('{"a": 1}', {"a": 1}),
        ('```json\n{"a": [1, 2]}\n```', {"a": [1, 2]}),
        ("  ```\n[]\n```  ", []),
        ("The answer is {a: 1}", None),
    ],
)
def test_json_outputs_are_parsed_when_they_are_json(text, parsed):
    assert parse_json_output(text) == parsed


# --- running prompts: what the gateway's chunks become -------------------------------------


class _Gateway:
    """Stands in for backend.ai.gateway.Gateway (the integration tests run the real one):
    answers with the chunks given, or refuses, and tells whether its stream was closed."""

    def __init__(self, chunks=(), refuse=None):
        self.chunks = list(chunks)
        self.refuse = refuse
        self.closed = False
        self.bodies = []

    async def complete(self, principal, body, *, prompt=None):
        self.bodies.append((body, prompt))
        return {
            "model": body["model"],
            "choices": [
                {"message": {"content": '```json\n{"a": 1}\n```'}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4},
        }

    async def stream(self, principal, body, *, prompt=None):
        self.bodies.append((body, prompt))
        try:
            if self.refuse is not None:
                raise self.refuse
            for chunk in self.chunks:
                yield chunk
        finally:
            self.closed = True


def _chunk(content=None, finish=None, usage=None, choices=True):
    chunk = {"model": "gpt-4o-mini", "usage": usage}
    chunk["choices"] = (
        [{"index": 0, "delta": {"content": content} if content else {}, "finish_reason": finish}]
        if choices
        else []
    )
    return chunk


def _runner(gateway):
    from backend.ai.runner import PromptRunner

    return PromptRunner(gateway, load_library(SHIPPED))


async def test_a_stream_yields_deltas_then_the_whole_result():
    from backend.ai.runner import Delta, RunResult

    gateway = _Gateway(
        [
            _chunk(""),
            _chunk("Hello"),
            _chunk(" world"),
            _chunk(finish="stop"),
            _chunk(usage={"prompt_tokens": 5, "completion_tokens": 2}, choices=False),
        ]
    )
    prompt = load_library(SHIPPED).require("summarize")
    events = [e async for e in await _runner(gateway).stream(None, prompt, {"text": "t"})]
    assert events[:2] == [Delta(content="Hello"), Delta(content=" world")]
    (result,) = events[2:]
    assert isinstance(result, RunResult)
    assert (result.output, result.finish_reason) == ("Hello world", "stop")
    assert result.usage == {"prompt_tokens": 5, "completion_tokens": 2}
    body, use = gateway.bodies[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (use.name, use.version) == ("summarize", "1")
    assert gateway.closed


async def test_a_refused_stream_raises_before_it_starts_and_is_closed():
    gateway = _Gateway(refuse=TooMany("over budget"))
    prompt = load_library(SHIPPED).require("summarize")
    with pytest.raises(TooMany):
        await _runner(gateway).stream(None, prompt, {"text": "t"})

    assert gateway.closed


async def test_leaving_a_stream_early_closes_the_gateways():
    gateway = _Gateway([_chunk("a"), _chunk("b"), _chunk("c")])
    prompt = load_library(SHIPPED).require("summarize")
    events = await _runner(gateway).stream(None, prompt, {"text": "t"})
    assert (await anext(events)).content == "a"
    await events.aclose()  # what a client going away does to the SSE response
    assert gateway.closed


async def test_a_json_prompt_parses_its_answer():
    prompt = load_library(SHIPPED).require("extract_json")
    result = await _runner(_Gateway()).run(None, prompt, {"text": "t", "schema": {}})
    assert result.data == {"a": 1} and result.usage == {"prompt_tokens": 3, "completion_tokens": 4}


def test_citations_are_marked_when_the_answer_cites_them():
    from backend.ai.rag import ChunkRef, Citation, cite

    citations = [
        Citation(n=n, record_id=f"r{n}", chunk=ChunkRef(index=0, content="c"), score=1.0)
        for n in (1, 2, 3)
    ]
    answer = cite("Lava is hot [1][3]. Not [12] nor 2.", citations)
    assert [c.cited for c in answer.citations] == [True, False, True]


MODELS = """
providers:
  local: {base_url: "http://127.0.0.1:9/v1"}
models:
  %s: {provider: local, model: some-model}
"""


@pytest.mark.parametrize(("alias", "code"), [("gpt-4o-mini", 0), ("llama", 1)])
def test_prompts_check_knows_the_gateways_model_aliases(tmp_path, alias, code):
    folder, models = tmp_path / "prompts", tmp_path / "models.yaml"
    folder.mkdir()
    (folder / "greet.yaml").write_text(GOOD)
    models.write_text(MODELS % alias)
    command = ["prompts", "check", "--dir", str(folder), "--models", str(models)]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == code, result.output
    if code:
        assert "model 'gpt-4o-mini' is not a model alias (known: llama)" in result.output
        assert "0 prompts ok, 1 problems" in result.output
    models.write_text("models: [")
    broken = CliRunner().invoke(main, command)
    assert broken.exit_code == 1 and "not valid YAML" in broken.output
