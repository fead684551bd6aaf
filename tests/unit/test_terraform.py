"""The deploy files, checked statically: Terraform cannot run here, so its files must at least
parse, declare their variables properly, use them, and be called with what they require.
checkov runs over the same files in `make lint`; the Dockerfile's promises are checked too."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest

ROOT = Path(__file__).parents[2]
TERRAFORM = ROOT / "infra" / "terraform"
MODULES = sorted(p for p in (TERRAFORM / "modules").iterdir() if p.is_dir())
ENVS = sorted(p for p in (TERRAFORM / "envs").iterdir() if p.is_dir())
META_ARGUMENTS = {"source", "depends_on", "count", "for_each", "providers", "version"}


def _name(key: str) -> str:
    return key.strip('"')


@cache
def _parsed(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        parsed: dict[str, Any] = hcl2.load(handle)
    return parsed


def _blocks(directory: Path, kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        for block in _parsed(path).get(kind, []):
            for key, body in block.items():
                found[_name(key)] = body
    return found


def test_every_terraform_file_parses():
    files = sorted(TERRAFORM.rglob("*.tf"))
    assert len(files) >= 30
    for path in files:
        assert isinstance(_parsed(path), dict), path


def test_the_modules_and_environments_are_all_there():
    assert {m.name for m in MODULES} >= {
        "network",
        "database",
        "cache",
        "service",
        "edge",
        "registry",
    }
    assert {e.name for e in ENVS} == {"dev", "prod"}
    for env in ENVS:
        assert (env / "backend.tf.example").exists() and (env / "terraform.tfvars.example").exists()
        assert {"api_url", "websocket_url"} <= set(_blocks(env, "output"))


@pytest.mark.parametrize("directory", MODULES + ENVS, ids=lambda p: p.name)
def test_every_variable_has_a_type_and_a_description(directory):
    variables = _blocks(directory, "variable")
    assert variables, directory
    for name, body in variables.items():
        assert "type" in body, f"{directory.name}: variable {name} has no type"
        assert _name(str(body.get("description", ""))).strip(), (
            f"{directory.name}: variable {name} has no description"
        )


@pytest.mark.parametrize("directory", MODULES + ENVS, ids=lambda p: p.name)
def test_every_variable_is_used(directory):
    text = "\n".join(p.read_text() for p in directory.glob("*.tf") if p.name != "variables.tf")
    for name in _blocks(directory, "variable"):
        assert re.search(rf"\bvar\.{name}\b", text), f"{directory.name}: var.{name} is unused"


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_every_environment_passes_what_each_module_requires_and_nothing_else(env):
    calls = _blocks(env, "module")
    assert calls
    for call_name, arguments in calls.items():
        source = _name(str(arguments["source"]))
        module = (env / source).resolve()
        assert module.is_dir(), f"{env.name}: module {call_name} points at {source}"
        declared = _blocks(module, "variable")
        required = {name for name, body in declared.items() if "default" not in body}
        passed = {key for key in arguments if not key.startswith("__")} - META_ARGUMENTS
        assert required <= passed, f"{env.name}.{call_name} misses {sorted(required - passed)}"
        assert passed <= set(declared), (
            f"{env.name}.{call_name} passes {sorted(passed - set(declared))}"
        )


def test_prod_turns_on_what_dev_may_leave_off():
    prod = _blocks(TERRAFORM / "envs" / "prod", "module")
    assert prod["database"]["multi_az"] is True and prod["database"]["deletion_protection"] is True
    assert prod["cache"]["automatic_failover"] is True and prod["cache"]["replicas"] >= 1
    assert prod["edge"]["deletion_protection"] is True
    assert prod["network"]["single_nat_gateway"] is False


def test_the_image_is_multi_stage_non_root_and_checks_its_health():
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.MULTILINE)
    assert len(stages) == 3, "a build stage and a runtime stage"
    runtime = stages[-1]
    assert re.search(r"^USER 10001", runtime, flags=re.MULTILINE)
    assert "HEALTHCHECK" in runtime and "/health" in runtime
    assert not re.search(r"apt-get install|gcc|build-essential", runtime)
    assert re.search(r'^ENTRYPOINT \["litebase"\]', runtime, flags=re.MULTILINE)
    ignored = (ROOT / ".dockerignore").read_text()
    assert "*" in ignored.splitlines()  # everything out, then what the image needs back in
