# Two entry points (see README): `make conformance` and `make test`.
# Each installs what it needs first; backends (ElasticMQ jars, Toxiproxy) are
# fetched into ~/.cache/pytest-taskqueue by the harness on first use.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: install backends conformance test lint unit

install: .stamp-install
.stamp-install: pyproject.toml
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# Fetch and build the local backends now (otherwise the first test run does it).
backends: install
	$(PYTHON) -m pytest_taskqueue.cli install

# The main job: the bundled conformance suite against the reference stack, with its verdict.
conformance: backends
	$(PYTHON) -m pytest --pyargs scenarios -p no:cacheprovider \
		--taskqueue-report=reports/conformance.json $(PYTEST_ARGS)

lint: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy

# Everything: lint, the unit and integration tests, the suite against the reference stack.
test: backends lint
	$(PYTHON) -m pytest -p no:cacheprovider $(PYTEST_ARGS)
