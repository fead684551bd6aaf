# Short targets that call the tools, so nobody has to remember flags.
# Every install goes through uv and a lock with hashes (docs/decisions/0008-lock-with-uv.md):
#   uv.lock                  the app, its extras and the Python client
#   requirements/uv.txt      uv itself (installed by pip, hashes checked)
#   requirements/checkov.txt checkov's own venv
#   requirements/lowest.txt  the lowest versions pyproject.toml allows (`make test-lowest`)
# `make lock` refreshes all four; nothing else changes what gets installed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# uv lives in a venv of its own, pinned and hash-checked by requirements/uv.txt.
UV_VENV ?= .venv-uv
UV := $(UV_VENV)/bin/uv
UV_STAMP := $(UV_VENV)/.installed-stamp
# uv never downloads a Python: it uses $(PYTHON), and .venv is the project's environment.
export UV_PYTHON := $(PYTHON)
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
# pytest-xdist workers for `make test` (each starts its own embedded Postgres and Redis, and an
# e2e stack when one of its tests needs it): one more than the cores, as the e2e tests spend
# much of their time waiting on processes and timers (2 cores: 9.5-10.7 min with 3, 14.3 with 2).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))
# checkov lives in a venv of its own: its pins must not decide the app's dependencies.
INFRA_VENV ?= .venv-infra
CHECKOV := $(INFRA_VENV)/bin/checkov
CHECKOV_STAMP := $(INFRA_VENV)/.installed-stamp
# `make test-lowest` installs requirements/lowest.txt here.
LOWEST_VENV ?= .venv-lowest
# The Python the lowest versions are resolved for: the oldest one pyproject.toml allows.
LOWEST_PYTHON_VERSION ?= 3.11

# The TypeScript client (clients/js): Node 20+ and npm, its lock installed as committed.
JS := clients/js
JS_STAMP := $(JS)/node_modules/.installed-stamp

.PHONY: install dev test test-lowest lint format bench lock clean js chromium

$(UV_STAMP): requirements/uv.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Litebase needs Python 3.11 or newer (set PYTHON=python3.11)")'
	test -x $(UV_VENV)/bin/python || $(PYTHON) -m venv $(UV_VENV)
	$(UV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements/uv.txt
	touch $(UV_STAMP)

# --locked: a pyproject.toml changed without `make lock` is an error, not a silent re-resolve.
$(STAMP): uv.lock pyproject.toml clients/python/pyproject.toml $(UV_STAMP)
	$(UV) sync --locked --all-packages --extra dev --extra embedded
	touch $(STAMP)

install: $(STAMP)

$(CHECKOV_STAMP): requirements/checkov.txt $(UV_STAMP)
	test -x $(INFRA_VENV)/bin/python || $(UV) venv --quiet $(INFRA_VENV)
	$(UV) pip sync --quiet --python $(INFRA_VENV)/bin/python --require-hashes requirements/checkov.txt
	touch $(CHECKOV_STAMP)

$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	@command -v node >/dev/null && node -e 'process.exit(parseInt(process.versions.node) < 20 ? 1 : 0)' || { echo "The JS client needs Node 20 or newer and npm: apt-get install -y nodejs npm"; exit 1; }
	cd $(JS) && npm ci --no-audit --no-fund
	touch $(JS_STAMP)

# Type-check (strict) and build the client; prints its size.
js: $(JS_STAMP)
	cd $(JS) && npm run --silent typecheck && npm run --silent build

# The browser tests drive Debian's chromium (tests/e2e/test_js_browser.py): installed here when
# missing and we are root (CI and these machines); anyone else is told the one command to run.
chromium:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium is missing for the browser tests: sudo apt-get install -y chromium"; exit 1; fi; }

dev: $(STAMP)
	$(VENV)/bin/litebase dev

lint: $(STAMP) $(CHECKOV_STAMP)
	$(VENV)/bin/ruff check backend workers tests bench clients/python/litebase_client
	$(VENV)/bin/ruff format --check backend workers tests bench clients/python/litebase_client
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/litebase prompts check
	$(VENV)/bin/litebase mail check
	$(CHECKOV) -d infra/terraform --framework terraform --quiet --compact --skip-download

format: $(STAMP)
	$(VENV)/bin/ruff check --fix backend workers tests bench clients/python/litebase_client
	$(VENV)/bin/ruff format backend workers tests bench clients/python/litebase_client

# The client's Node suite runs inside pytest (tests/e2e/test_js_client.py), against the e2e stack.
test: lint js chromium
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

# The floors in pyproject.toml, checked: the lowest version of every direct dependency (their
# own dependencies at the newest that fit), then the unit and integration tests.
test-lowest: $(UV_STAMP)
	rm -rf $(LOWEST_VENV)
	$(UV) venv --quiet $(LOWEST_VENV)
	$(UV) pip sync --quiet --python $(LOWEST_VENV)/bin/python --require-hashes requirements/lowest.txt
	$(UV) pip install --quiet --python $(LOWEST_VENV)/bin/python --no-deps -e . -e clients/python
	$(LOWEST_VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup tests/unit tests/integration

# Everything to the newest versions pyproject.toml allows (docs/development.md: when, and what
# to run after).
lock: $(UV_STAMP)
	$(UV) pip compile --quiet --upgrade --universal --python-version $(LOWEST_PYTHON_VERSION) --generate-hashes requirements/uv.in -o requirements/uv.txt
	$(UV) lock --upgrade
	$(UV) pip compile --quiet --upgrade --universal --python-version $(LOWEST_PYTHON_VERSION) --generate-hashes requirements/checkov.in -o requirements/checkov.txt
	$(UV) pip compile --quiet --upgrade --universal --python-version $(LOWEST_PYTHON_VERSION) --generate-hashes --resolution lowest-direct --extra dev --extra embedded pyproject.toml clients/python/pyproject.toml -o requirements/lowest.txt

bench: $(STAMP)
	@for script in bench/*.py; do echo "== $$script"; $(PY) $$script || exit 1; done

clean:
	rm -rf $(VENV) $(UV_VENV) $(INFRA_VENV) $(LOWEST_VENV) .pytest_cache .mypy_cache .ruff_cache
