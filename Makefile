# The README's two commands, `make conformance` and `make test`, plus `make quick` while you work.
#
# Everything runs in a project-local virtual environment, .venv, made on first use from the
# machine's python3 (tools/make_venv.py; a Debian/Ubuntu system Python marked externally managed
# works too): no active venv is needed and nothing is installed into the system Python.
# Backends (ElasticMQ's jars into Maven's local repository, Toxiproxy built with `go install` into
# ~/.cache/pytest-taskqueue) are fetched by `taskqueue-harness install` on first use.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Recipes run as if the venv were active, so that the scripts it installs (taskqueue-harness) and its
# python3 come first on PATH; the venv itself is made with the PATH make was started with.
ORIGINAL_PATH := $(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(VIRTUAL_ENV)/bin:$(PATH)
PYTEST_ARGS ?=
# Tests that start no backend and no server: seconds, not minutes (tests/test_make.py keeps the list true).
UNIT_TESTS := tests/test_stubs.py tests/contract tests/suite/test_checks.py \
	tests/fault_injection/test_history_checker.py tests/fault_injection/test_history_recorder.py \
	tests/plugin/test_options.py tests/test_make.py

.PHONY: venv install backends browser conformance lint unit quick test

venv: $(PY)
$(PY):
	PATH='$(ORIGINAL_PATH)' $(PYTHON) tools/make_venv.py $(VENV)

install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml | $(PY)
	@echo "make: installing pytest-taskqueue and its dev tools into $(VENV) (the first run downloads every package: minutes)..."
	$(PY) -m pip install --disable-pip-version-check --progress-bar off -e '.[dev]' \
		| (grep --line-buffered -v '^Requirement already satisfied' || true)
	$(PY) -c 'import pytest_taskqueue, grpc_tools, mypy, ruff, xdist'  # the install above really worked
	touch $@

# Fetch and build the local backends now (otherwise the first test run does it).
backends: install
	$(PY) -m pytest_taskqueue.cli install

# Headless Debian chromium, for the tests that check HTML reports; installed with apt-get when
# absent and run as root (CI), else they say what is missing.
browser:
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "make: installing Debian's chromium (headless, for the HTML report tests): apt-get install -y chromium"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	else echo "make: no chromium on PATH and not root: tests that render HTML reports will say so"; fi

# The main job: the bundled conformance suite against the reference stack, with its verdict.
conformance: backends
	$(PY) -m pytest --pyargs scenarios -p no:cacheprovider \
		--taskqueue-report=reports/conformance.json $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .
	$(PY) -m mypy

unit: install
	$(PY) -m pytest -p no:cacheprovider -q $(UNIT_TESTS) $(PYTEST_ARGS)

# What a contributor runs often: lint, the unit tests, the bundled suite once against the reference.
quick: lint unit backends
	$(PY) -m pytest --pyargs scenarios -p no:cacheprovider -q $(PYTEST_ARGS)

# Everything (what .ci/run runs): lint, every test including integration, the suite against the reference.
test: backends browser lint
	$(PY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)
