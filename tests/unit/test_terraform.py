"""The deploy files, checked statically: Terraform cannot run here, so its files must at least
parse, declare their variables properly, use them, and be called with what they require, at
both levels (each environment calls the stack, the stack calls the modules). checkov runs over
the same files in `make lint`; the Dockerfile's promises are checked too."""

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
STACK = TERRAFORM / "stack"
ENVS = sorted(p for p in (TERRAFORM / "envs").iterdir() if p.is_dir())
CALLERS = [STACK, *ENVS]
META_ARGUMENTS = {"source", "depends_on", "count", "for_each", "providers", "version"}
# What an operator gives an environment; everything else is the environment's own decision.
OPERATOR_INPUTS = {
    "region",
    "environment",
    "availability_zones",
    "domain_name",
    "certificate_arn",
    "image_tag",
    "openai_api_key_secret_arn",
    "app_url",
    "mail_from",
    "smtp_credentials_secret_arn",
    "cors_origins",
    "settings",
}


# Modules the stack gained after it replaced the environments' own calls: no state holds them
# at an old address, so nothing moves.
MODULES_SINCE_THE_STACK = {"files"}


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


def _called(caller: Path, arguments: dict[str, Any]) -> Path:
    """The module a call points at: its `source`, relative to the calling directory."""
    return (caller / _name(str(arguments["source"]))).resolve()


def _label(directory: Path) -> str:
    return str(directory.relative_to(TERRAFORM))


def test_every_terraform_file_parses():
    files = sorted(TERRAFORM.rglob("*.tf"))
    assert len(files) >= 40
    for path in files:
        assert isinstance(_parsed(path), dict), path


def test_the_modules_the_stack_and_the_environments_are_all_there():
    assert {m.name for m in MODULES} >= {
        "keys",
        "network",
        "database",
        "cache",
        "service",
        "edge",
        "registry",
        "files",
    }
    assert {_called(STACK, call) for call in _blocks(STACK, "module").values()} == {
        m.resolve() for m in MODULES
    }
    assert {e.name for e in ENVS} == {"dev", "prod"}
    for env in ENVS:
        assert (env / "backend.tf.example").exists() and (env / "terraform.tfvars.example").exists()
        calls = _blocks(env, "module")
        assert list(calls) == ["stack"], f"{env.name} is one call of the stack"
        assert _called(env, calls["stack"]) == STACK.resolve()
        assert set(_blocks(env, "variable")) == OPERATOR_INPUTS


def test_the_stack_needs_providers_and_configures_none():
    versions = _parsed(STACK / "versions.tf")["terraform"][0]["required_providers"][0]
    assert {"aws", "random"} <= set(versions)
    for path in STACK.glob("*.tf"):
        assert "provider" not in _parsed(path), f"{path.name} configures a provider"
    for env in ENVS:
        providers = [p for path in env.glob("*.tf") for p in _parsed(path).get("provider", [])]
        assert [_name(k) for p in providers for k in p] == ["aws"], env.name
        aws = next(iter(providers[0].values()))
        assert aws["region"] == "${var.region}" and aws["default_tags"], env.name


@pytest.mark.parametrize("directory", [*MODULES, *CALLERS], ids=_label)
def test_every_variable_has_a_type_and_a_description(directory):
    variables = _blocks(directory, "variable")
    assert variables, directory
    for name, body in variables.items():
        assert "type" in body, f"{_label(directory)}: variable {name} has no type"
        assert _name(str(body.get("description", ""))).strip(), (
            f"{_label(directory)}: variable {name} has no description"
        )


@pytest.mark.parametrize("directory", [*MODULES, *CALLERS], ids=_label)
def test_every_variable_is_used(directory):
    text = "\n".join(p.read_text() for p in directory.glob("*.tf") if p.name != "variables.tf")
    for name in _blocks(directory, "variable"):
        assert re.search(rf"\bvar\.{name}\b", text), f"{_label(directory)}: var.{name} is unused"


@pytest.mark.parametrize("caller", CALLERS, ids=_label)
def test_every_call_passes_what_the_module_requires_and_nothing_else(caller):
    calls = _blocks(caller, "module")
    assert calls
    for call_name, arguments in calls.items():
        module = _called(caller, arguments)
        assert module.is_dir(), f"{_label(caller)}: module {call_name} points at {module}"
        declared = _blocks(module, "variable")
        required = {name for name, body in declared.items() if "default" not in body}
        passed = {key for key in arguments if not key.startswith("__")} - META_ARGUMENTS
        where = f"{_label(caller)}.{call_name}"
        assert required <= passed, f"{where} misses {sorted(required - passed)}"
        assert passed <= set(declared), f"{where} passes {sorted(passed - set(declared))}"


@pytest.mark.parametrize("caller", CALLERS, ids=_label)
def test_every_module_output_used_is_declared(caller):
    calls = _blocks(caller, "module")
    text = "\n".join(p.read_text() for p in caller.glob("*.tf") if p.name != "moved.tf")
    used = set(re.findall(r"\bmodule\.(\w+)\.(\w+)", text))
    assert used
    for call_name, output in used:
        assert call_name in calls, f"{_label(caller)}: no module {call_name}"
        outputs = _blocks(_called(caller, calls[call_name]), "output")
        assert output in outputs, f"{_label(caller)}: module.{call_name} has no output {output}"


def test_the_environments_expose_every_output_the_deploy_guide_uses():
    guide = (ROOT / "docs" / "deploy.md").read_text()
    named = set(re.findall(r"terraform output (?:-\w+ )*(\w+)", guide)) | {"api_url"}
    assert len(named) >= 8, sorted(named)
    assert named <= set(_blocks(STACK, "output"))
    for env in ENVS:
        outputs = _blocks(env, "output")
        assert named <= set(outputs), f"{env.name} misses {sorted(named - set(outputs))}"
        for name in named:
            assert outputs[name]["value"] == f"${{module.stack.{name}}}", f"{env.name}: {name}"


@pytest.mark.parametrize("env", ENVS, ids=lambda p: p.name)
def test_a_state_from_before_the_stack_moves_into_it(env):
    moved = [block for path in env.glob("*.tf") for block in _parsed(path).get("moved", [])]
    moves = {block["from"]: block["to"] for block in moved}
    assert moves == {
        f"${{module.{name}}}": f"${{module.stack.module.{name}}}"
        for name in _blocks(STACK, "module")
        if name not in MODULES_SINCE_THE_STACK
    }


def test_prod_turns_on_what_dev_may_leave_off():
    prod = _blocks(TERRAFORM / "envs" / "prod", "module")["stack"]
    assert prod["database"]["multi_az"] is True and prod["database"]["deletion_protection"] is True
    assert prod["database"]["backup_retention_days"] >= 14
    assert prod["cache"]["automatic_failover"] is True and prod["cache"]["replicas"] >= 1
    assert prod["load_balancer_deletion_protection"] is True
    assert prod["single_nat_gateway"] is False
    assert prod["key_deletion_window_days"] == 30
    assert prod["api"]["count"]["min"] >= 2 and prod["worker"]["count"]["min"] >= 2


def test_the_stack_defaults_to_the_safe_side():
    """What an environment leaves out is prod's setting, never dev's relaxation."""
    variables = _blocks(STACK, "variable")
    assert variables["single_nat_gateway"]["default"] is False
    assert variables["load_balancer_deletion_protection"]["default"] is True
    assert variables["key_deletion_window_days"]["default"] == 30
    safe = {"database": ("multi_az", "deletion_protection"), "cache": ("automatic_failover",)}
    for variable, toggles in safe.items():
        for toggle in toggles:
            pattern = rf"\b{toggle}\s*=\s*optional\(bool,\s*true\)"
            assert re.search(pattern, variables[variable]["type"]), f"{variable}.{toggle}"


def test_the_workers_send_mail_through_ses_with_credentials_from_secrets_manager():
    """Prod refuses to start with the console mail backend: the stack gives every task the SES
    SMTP settings, the credentials from a secret the execution role may read, and the workers
    (which send the mail; the API only queues it) a way out on port 587."""
    service = _parsed(TERRAFORM / "modules" / "service" / "main.tf")
    smtp = {k: _name(str(v)) for k, v in service["locals"][0]["smtp_settings"].items()}
    assert smtp["MAIL_BACKEND"] == "smtp" and smtp["SMTP_PORT"] == "587"
    assert smtp["SMTP_SECURITY"] == "starttls" and "email-smtp." in smtp["SMTP_HOST"]
    text = (TERRAFORM / "modules" / "service" / "main.tf").read_text()
    for name, key in (("SMTP_USERNAME", "username"), ("SMTP_PASSWORD", "password")):
        pattern = rf'name = "{name}", valueFrom = "\$\{{var.smtp_credentials_secret_arn\}}:{key}::"'
        assert re.search(pattern, text), name
    assert re.search(r"secret_arns = compact\(\[[^\]]*var\.smtp_credentials_secret_arn", text)
    environment = _blocks(STACK, "module")["service"]["environment"]
    assert "APP_URL = var.app_url" in environment and "MAIL_FROM = var.mail_from" in environment
    assert _blocks(STACK, "module")["service"]["smtp_credentials_secret_arn"] == (
        "${var.smtp_credentials_secret_arn}"
    )
    [rule] = [
        body
        for path in (TERRAFORM / "modules" / "network").glob("*.tf")
        for block in _parsed(path).get("resource", [])
        for kind, resources in block.items()
        if _name(kind) == "aws_vpc_security_group_egress_rule"
        for body in resources.values()
        if body.get("from_port") == 587
    ]
    assert rule["to_port"] == 587 and _name(rule["ip_protocol"]) == "tcp"
    assert rule["security_group_id"] == "${aws_security_group.worker.id}"


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


def _resources(directory: Path, kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.tf")):
        for block in _parsed(path).get("resource", []):
            for name, body in block.get(f'"{kind}"', block.get(kind, {})).items():
                found[_name(name)] = body
    return found


def test_the_files_bucket_is_private_encrypted_versioned_and_tls_only():
    files = TERRAFORM / "modules" / "files"
    text = "\n".join(path.read_text() for path in files.glob("*.tf"))
    public = _resources(files, "aws_s3_bucket_public_access_block")["this"]
    for toggle in (
        "block_public_acls",
        "block_public_policy",
        "ignore_public_acls",
        "restrict_public_buckets",
    ):
        assert public[toggle] is True, toggle
    assert 'sse_algorithm     = "aws:kms"' in text and "kms_master_key_id = var.kms_key_arn" in text
    assert 'status = "Enabled"' in text  # versioning
    assert "days_after_initiation = 1" in text  # incomplete multipart uploads aborted
    assert "noncurrent_days = var.noncurrent_version_days" in text
    assert '"aws:SecureTransport"' in text and 'effect  = "Deny"' in text
    assert 'object_ownership = "BucketOwnerEnforced"' in text


def test_only_the_task_role_may_use_the_files_bucket():
    service = (TERRAFORM / "modules" / "service" / "main.tf").read_text()
    mentions = [line for line in service.splitlines() if "files_bucket_arn" in line]
    assert len(mentions) == 2, mentions  # the task policy's two statements, nothing else
    task = service[service.index('data "aws_iam_policy_document" "task"') :]
    task = task[: task.index('resource "aws_iam_role_policy" "task"')]
    assert "var.files_bucket_arn" in task and "s3:*" not in task
    execution = service[service.index('data "aws_iam_policy_document" "execution"') :]
    execution = execution[: execution.index('resource "aws_iam_role" "execution"')]
    assert "files_bucket" not in execution and "s3:" not in execution
    stack = (STACK / "main.tf").read_text()
    assert 'FILES_STORAGE        = "s3"' in stack and "module.files.bucket_name" in stack


def test_prod_keeps_its_files_when_torn_down():
    prod = _blocks(TERRAFORM / "envs" / "prod", "module")["stack"]
    assert "files_force_destroy" not in prod
    assert _blocks(STACK, "variable")["files_force_destroy"]["default"] is False
