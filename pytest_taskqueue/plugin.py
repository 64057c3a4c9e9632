"""pytest plugin entry point (registered as ``pytest11: taskqueue``): hooks and options only.

The work is done by the modules these hooks call: ``_options`` (the ``taskqueue`` option group
and its validation), ``_collect`` (markers, the bundled suite, scenario metadata), ``fixtures``
(the harness and its session fixtures), ``_session`` (outcomes, verdict, report, exit status)
and ``_infra`` (stopping the run on an infrastructure error). A run that uses none of it (plain
tests on a machine where the plugin is installed) only pays for option parsing.
"""

from __future__ import annotations

import pathlib

import pytest

from pytest_taskqueue import _collect, _options, _report, fixtures
from pytest_taskqueue._infra import is_xdist_worker
from pytest_taskqueue._session import ConformanceSession


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``taskqueue`` option group and its ini keys."""
    _options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Validate the options (a bad one is a ``UsageError`` naming it), register markers and fixtures."""
    options = _options.load_config(config)
    config.stash[_options.CONFIG_KEY] = options
    config.stash[_report.INFO_KEY] = _report.RunInfo()
    _collect.configure(config, options)
    config.pluginmanager.register(fixtures, "taskqueue-fixtures")
    if not is_xdist_worker(config):
        config.pluginmanager.register(ConformanceSession(config), "taskqueue-session")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Unregister what ``pytest_configure`` registered (in-process pytester runs reuse the module)."""
    for name in ("taskqueue-session", "taskqueue-fixtures"):
        plugin = config.pluginmanager.get_plugin(name)
        if plugin is not None:
            config.pluginmanager.unregister(plugin, name)


def pytest_report_header(config: pytest.Config) -> str | None:
    """Name the target in the header when one was given."""
    options = config.stash[_options.CONFIG_KEY]
    if options.target is None:
        return None
    return f"taskqueue: target {options.target}, wait timeout {options.timeout:g} s"


def pytest_collect_file(file_path: pathlib.Path, parent: pytest.Collector) -> pytest.Module | None:
    """Collect the bundled scenario modules (``scenarios/lifecycle.py``...) whatever ``python_files`` says."""
    return _collect.collect_scenario_module(file_path, parent)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tag scenarios with their id, area, obligation and spec sections (reports carry them to the
    xdist controller), and note the bundled catalogue before ``-m``/``-k`` deselect any of it."""
    _collect.tag_scenarios(config, items)
    _collect.snapshot_catalogue(config, items)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Record which required scenarios of the catalogue the selection left out (a PARTIAL run)."""
    if session.items:
        session.config.stash[_report.INFO_KEY].note_left_out(_collect.note_selection(session))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """xdist worker: send what this worker learned (target, GetServerInfo, an infrastructure error)."""
    config = session.config
    if is_xdist_worker(config):
        workeroutput = config.workeroutput  # type: ignore[attr-defined]
        workeroutput[_report.WORKER_OUTPUT_KEY] = config.stash[_report.INFO_KEY].as_output()
