"""The rules of the TaskQueue contract (docs/spec.md), written once.

Everything that judges what a TaskQueue implementation did uses this package: the conformance
scenarios, the harness's messages and the chaos run's history checker. It imports only
``taskqueue_proto`` and the standard library.

Names (spec 2.2, 2.3, 3.2, 4.2):

- ``Status``, ``EventType``: IntEnums with the proto's numbers; ``status_name``/``event_name``
  render any number (``<status 9>`` for undefined ones); ``status_from_name``/``event_type_from_name``.
- ``TERMINAL``, ``LEGAL_TRANSITIONS`` (the table of 2.2), ``REACHABLE`` (its transitive closure).
- ``DEFAULT_MAX_ATTEMPTS``, ``MAX_MAX_ATTEMPTS``, ``effective_max_attempts(requested)``.

Values: ``Event`` and ``Task`` (plain snapshots; ``as_event``/``as_task`` convert proto messages,
and every rule accepts either), ``Violation(section, message, rule)`` whose ``str`` is
``"spec 4.3: ..."`` and whose ``rule`` is an id of ``RULES``.

Rules, each returning a list of ``Violation`` (empty when every rule holds):

- ``history_violations(events, max_attempts=None, final=False)``: the history grammar (4.3),
  ordering and `at` (4.1), event fields (4.2), nothing after a terminal event (2.3, 7.1), DEAD
  right after FAILED(max_attempts) (5.3), no attempt beyond max_attempts (5.4). ``final``: the
  history is the task's last, so all attempts failed without DEAD is a violation too.
  ``walk_history`` returns the same plus the facts other rules need (``HistoryWalk``: PROCESSING
  count, FAILED events, unrecorded abandoned attempts, the observable ``State`` list).
- ``task_field_violations(task)``: one snapshot on its own (2.1, 2.4 timestamps, 3.2 effective
  max_attempts, 4.5 PENDING exactly while no attempt started).
- ``task_history_violations(task, events)``: a snapshot against a history read at the same time or
  later: a terminal task matches the history's end, any other is one of its states, so
  ``attempts`` = PROCESSING events at every read (4.5); ``last_error`` set after a failure (2.4).
- Observation (8.4): ``prefix_violations(earlier, later)`` (a history read earlier is a prefix of
  a later one), ``snapshot_violations(snapshots)`` (one reader's successive snapshots only move
  along 2.2; attempts and updated_at never go back), ``observed_violations(reads, final)`` (one
  reader's snapshots and histories, in order, against the task's final history);
  ``state_index(read, walk)`` places one read among a history's states, to order reads in time.

SHOULDs are not rules here (SUBMITTED's and DEAD's attempt 0, 4.2).
"""

from taskqueue_contract._names import (
    DEFAULT_MAX_ATTEMPTS,
    LEGAL_TRANSITIONS,
    MAX_MAX_ATTEMPTS,
    REACHABLE,
    TERMINAL,
    EventType,
    Status,
    effective_max_attempts,
    event_name,
    event_type_from_name,
    status_from_name,
    status_name,
)
from taskqueue_contract._rules import (
    RULES,
    HistoryWalk,
    State,
    history_violations,
    observed_violations,
    prefix_violations,
    snapshot_violations,
    state_index,
    task_field_violations,
    task_history_violations,
    walk_history,
)
from taskqueue_contract._values import Event, EventLike, Task, TaskLike, Violation, as_event, as_task

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "LEGAL_TRANSITIONS",
    "MAX_MAX_ATTEMPTS",
    "REACHABLE",
    "RULES",
    "TERMINAL",
    "Event",
    "EventLike",
    "EventType",
    "HistoryWalk",
    "State",
    "Status",
    "Task",
    "TaskLike",
    "Violation",
    "as_event",
    "as_task",
    "effective_max_attempts",
    "event_name",
    "event_type_from_name",
    "history_violations",
    "observed_violations",
    "prefix_violations",
    "snapshot_violations",
    "state_index",
    "status_from_name",
    "status_name",
    "task_field_violations",
    "task_history_violations",
    "walk_history",
]
