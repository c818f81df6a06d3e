# Two commands do everything on a fresh clone: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1

.PHONY: install run test test-fast lint services bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip wheel
	# torch and torchvision come from this machine's disk (see README); pinned so nothing pulls another build.
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/ctax run

# PostgreSQL and Redis for the production profile, Chromium for the review page: started when not running.
services:
	.ci/services

test: install services
	$(PY) -m pytest -q -rfE

# No PostgreSQL, Redis, browser or model training: the unit and API tests, in a few minutes.
test-fast: install
	@start=$$(date +%s); \
	$(PY) -m pytest -q -m "not e2e and not browser and not postgres and not slow"; status=$$?; \
	echo "make test-fast took $$(( $$(date +%s) - start )) s"; exit $$status

lint: install
	$(VENV)/bin/ruff check ctax tests bench
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

clean:
	rm -rf var .pytest_cache .mypy_cache .import_linter_cache
