# Short targets that call the tools, so nobody has to remember flags.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# pytest-xdist workers for `make test` (each starts its own embedded Postgres and Redis).
TEST_WORKERS ?= 2
# checkov lives in a venv of its own: its pins must not decide the app's dependencies.
INFRA_VENV ?= .venv-infra
CHECKOV := $(INFRA_VENV)/bin/checkov
CHECKOV_VERSION ?= 3.3.30

.PHONY: install dev test lint format bench clean

$(STAMP): pyproject.toml clients/python/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Litebase needs Python 3.11 or newer (set PYTHON=python3.11)")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]" -e clients/python
	touch $(STAMP)

install: $(STAMP)

$(CHECKOV):
	test -x $(INFRA_VENV)/bin/python || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "checkov==$(CHECKOV_VERSION)"

dev: $(STAMP)
	$(VENV)/bin/litebase dev

lint: $(STAMP) $(CHECKOV)
	$(VENV)/bin/ruff check backend workers tests bench clients/python/litebase_client
	$(VENV)/bin/ruff format --check backend workers tests bench clients/python/litebase_client
	$(VENV)/bin/mypy
	$(VENV)/bin/litebase prompts check
	$(CHECKOV) -d infra/terraform --framework terraform --quiet --compact --skip-download

format: $(STAMP)
	$(VENV)/bin/ruff check --fix backend workers tests bench clients/python/litebase_client
	$(VENV)/bin/ruff format backend workers tests bench clients/python/litebase_client

test: lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

bench: $(STAMP)
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) $(INFRA_VENV) .pytest_cache .mypy_cache .ruff_cache
