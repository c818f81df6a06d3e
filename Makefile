# Two commands do everything on a fresh clone: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1

.PHONY: install run test test-fast lint bench clean

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

test: install
	$(PY) -m pytest -q -rfE

test-fast: install
	$(PY) -m pytest -q -m "not e2e and not browser and not slow"

lint: install
	$(VENV)/bin/ruff check ctax tests bench

clean:
	rm -rf var .pytest_cache
