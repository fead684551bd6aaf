# Short targets that call the tools, so nobody has to remember flags.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install dev test lint format bench clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Litebase needs Python 3.11 or newer (set PYTHON=python3.11)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]" -e clients/python
	touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	$(VENV)/bin/litebase dev

lint: $(STAMP)
	$(VENV)/bin/ruff check backend workers tests bench clients/python/litebase_client
	$(VENV)/bin/ruff format --check backend workers tests bench clients/python/litebase_client
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff check --fix backend workers tests bench clients/python/litebase_client
	$(VENV)/bin/ruff format backend workers tests bench clients/python/litebase_client

test: lint
	$(PY) -m pytest

bench: $(STAMP)
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
