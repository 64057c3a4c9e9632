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


_ASYNCIO_LOOP_SCOPE_INI = "asyncio_default_fixture_loop_scope"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Validate the options (a bad one is a ``UsageError`` naming it), register markers and fixtures.

    Runs before pytest-asyncio's own ``pytest_configure``: when the user's configuration leaves
    ``asyncio_default_fixture_loop_scope`` unset, it is set to ``function`` (pytest-asyncio's
    future default; the plugin's fixtures and scenarios name their loop scope themselves), so a
    run in an empty folder does not open with pytest-asyncio's deprecation warning.
    """
    _default_asyncio_loop_scope(config)
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


def _default_asyncio_loop_scope(config: pytest.Config) -> None:
    """Set pytest-asyncio's default fixture loop scope for this run when nothing set it.

    pytest has no public way for a plugin to give another plugin's ini key a default, so the
    value goes into the config's ini cache, which ``getini`` reads first; ``-o`` and ini files
    still win, since they are seen before this runs.
    """
    if not config.pluginmanager.has_plugin("asyncio"):
        return
    try:
        if config.getini(_ASYNCIO_LOOP_SCOPE_INI):
            return
    except ValueError:
        return  # a pytest-asyncio without this key
    cache = getattr(config, "_inicache", None)
    if isinstance(cache, dict):
        cache[_ASYNCIO_LOOP_SCOPE_INI] = "function"
