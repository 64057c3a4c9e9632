"""The named ways a test server can break the contract: one rule per name.

The suite tests start the in-memory server with ``--break NAME`` and check that the bundled suite
fails, naming the scenario for that rule. A break changes as little as possible so that the
failure points at one rule of docs/spec.md.
"""

from __future__ import annotations

BREAKS: dict[str, str] = {
    "wrong_error_codes": "bad input is answered INTERNAL instead of INVALID_ARGUMENT (spec 9.1)",
    "race_duplicates": "submit is check-then-insert with an await in between: racing submits "
    "create several tasks (spec 3.3)",
    "extra_attempt": "DEAD only after max_attempts+1 failed attempts (spec 5.3, 5.4)",
    "missing_event": "no PROCESSING event is recorded (spec 4.3, 4.4)",
    "rerun_on_resubmit": "a duplicate submit of the same request runs the task again (spec 3.3)",
    "created_true_on_resubmit": "a duplicate submit answers created=true (spec 3.3)",
    "raw_max_attempts_compare": "max_attempts 0 and 5 count as different requests (spec 3.2, 3.3)",
    "no_already_exists": "a different request on a used key returns the old task (spec 3.4)",
    "double_complete": "a successful attempt records COMPLETED twice (spec 4.3, 7.1)",
    "watch_never_closes": "WatchTask never closes the stream after the terminal snapshot (spec 8.2)",
    "not_found_as_invalid": "an unknown task_id is answered INVALID_ARGUMENT, not NOT_FOUND (spec 9)",
    "key_limit_off_by_one": "a 256-byte idempotency key is rejected (spec 9)",
    "dead_too_early": "DEAD after max_attempts-1 failed attempts (spec 5.4)",
    "wrong_attempt_numbers": "FAILED events carry the next attempt's number (spec 4.2)",
    "health_overall_only": "health answers only for '', not for taskqueue.v1.TaskQueue (spec 1.2)",
    "echo_text_result": "echo's result is the payload decoded as text, mangling binary bytes (spec 6)",
    "payload_limit_ignored": "a payload over max_payload_bytes is accepted (spec 9)",
    "no_last_error": "last_error stays empty after a failed attempt (spec 2.4)",
    "conflict_overwrites": "a conflicting submit answers ALREADY_EXISTS but overwrites the payload "
    "(spec 3.4)",
    "rejected_submit_reserves_key": "a rejected submit still claims its idempotency key (spec 9.1)",
    "updated_before_created": "updated_at is earlier than created_at (spec 2.4)",
    "no_event_time": "events carry no `at` time, so `at` trivially never goes backwards (spec 4.1)",
    "payload_limit_unbounded": "advertises max_payload_bytes of 100 MB and enforces no limit, so the "
    "payload limit cannot be tested (spec 8.3)",
    "bad_payload_stuck": "a malformed sleep/fail_times payload is accepted and its task then stays "
    "PENDING for ever (spec 6.1)",
    "rejected_key_truncated": "a key over 256 bytes is rejected, but a task is kept under its first "
    "256 bytes (spec 9.1)",
    "extra_member_rejected": "a sleep/fail_times payload with other members is rejected (spec 6.1)",
    "retrying_shown_as_processing": "between a failed attempt and the next one the status stays "
    "PROCESSING instead of RETRYING (spec 5.1)",
    "sleep_returns_at_once": 'sleep {"ms": N} completes at once instead of after N ms (spec 6.2)',
    "delayed_rerun_on_resubmit": "a resubmit of the same request quietly runs the task again a "
    "moment (100 ms) after answering, as work started on the side (spec 3.3)",
    "watch_one_snapshot_then_unavailable": "WatchTask sends the first snapshot, then fails "
    "UNAVAILABLE although nothing is down (spec 8.2)",
    "attempts_zero_until_terminal": "attempts is reported 0 until the task is terminal (spec 4.5)",
    "stale_reads": "every other GetTask answers the task as it was before its last change (spec 8.4)",
    "unavailable_after_create": "a creating submit stores and queues the task, then answers "
    "UNAVAILABLE, so its retry answers created=false and created=true is never seen (spec 3.1)",
    "cancel_strands_task": "a submit cancelled by its client (or, with --lose-answers, failed) after "
    "the task was written but before it was queued leaves it PENDING, and a retry answers it without "
    "queueing it (spec 3.7)",
    "created_false_on_create": "the submit that creates a task answers created=false (spec 3.1)",
    "rerun_later": "a completed task runs once more two seconds later, appending PROCESSING and "
    "COMPLETED after its terminal event (spec 2.3, 7.1); only the closing sweep sees it",
}
"""Every break name, with the rule it violates."""

QUIRKS: dict[str, str] = {
    "submitted_attempt_1": "SUBMITTED carries attempt 1 (a SHOULD of spec 4.2: still conforming)",
}
"""Deviations from a SHOULD only: the suite must stay conforming (only an optional scenario fails)."""

CHAOS_BREAKS: dict[str, str] = {
    "never_complete_every_50th": "every 50th task created is never run: it stays PENDING (spec 7.3)",
    "internal_on_backend_outage": "a simulated backend outage (0.5 s of every 3 s) is answered INTERNAL, "
    "not UNAVAILABLE (spec 9.2)",
    "abandons_without_fault": "every 7th attempt is abandoned by a live worker and the next one starts "
    "at once (spec 6.3, 7.2)",
}
"""Breaks only a longer mixed run shows (tests/fault_injection/test_chaos_breaks.py runs chaos on them)."""
