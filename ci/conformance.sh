#!/usr/bin/env bash
# Conformance gate for any CI: runs the pytest-taskqueue suite against your implementation.
#
# Full level (the default, and the only one that can say CONFORMING): the harness starts ElasticMQ,
# moto and Toxiproxy, then your server (and worker) against them, so the dead-letter-queue, worker
# recovery, durability and fault rules are checked too (docs/spec.md section 10):
#
#   TASKQUEUE_TARGET_CMD="./my-server --port {port} --dynamodb {dynamodb} --sqs {sqs} --region {region} \
#     --table {table} --queue {queue} --dlq {dlq}" \
#   TASKQUEUE_WORKER_CMD="./my-worker --dynamodb {dynamodb} --sqs {sqs} --queue {queue}" ci/conformance.sh
#
# Plain-target mode (API level): a server you started, or TASKQUEUE_START_CMD starts. The scenarios
# that need harness-owned backends cannot run; the verdict is at best CONFORMING AT API LEVEL, and
# the report lists what was not checked:
#
#   TASKQUEUE_TARGET=127.0.0.1:50051 TASKQUEUE_START_CMD="./my-server --port 50051" ci/conformance.sh
#
# Environment:
#   TASKQUEUE_TARGET_CMD  command template of your server (placeholders: docs/plugin.md); full level
#   TASKQUEUE_WORKER_CMD  optional: your separate worker (same placeholders but {port})
#   TASKQUEUE_TARGET      host:port of a running implementation (plain-target mode, without TARGET_CMD)
#   TASKQUEUE_START_CMD   plain-target mode: optional command that starts it; stopped when this exits
#   TASKQUEUE_PIP_SPEC    what to pip install (default: pytest-taskqueue)
#   TASKQUEUE_REPORT_DIR  where reports go (default: taskqueue-reports)
#   TASKQUEUE_STRICT=1    optional scenarios fail the gate too
#   PYTHON                interpreter (default: python3)
# Extra arguments go to pytest. Writes $TASKQUEUE_REPORT_DIR/{junit.xml,conformance.json,conformance.md}.
# Exit status is the verdict's: 0 CONFORMING (or CONFORMING AT API LEVEL in plain-target mode),
# 1 NOT CONFORMING, 6 PARTIAL (arguments left required scenarios out), 3 infrastructure error,
# 4 usage error.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
REPORT_DIR="${TASKQUEUE_REPORT_DIR:-taskqueue-reports}"

mode=()
if [[ -n "${TASKQUEUE_TARGET_CMD:-}" ]]; then
  if [[ -n "${TASKQUEUE_TARGET:-}" || -n "${TASKQUEUE_START_CMD:-}" ]]; then
    echo "ci/conformance.sh: set TASKQUEUE_TARGET_CMD (full level) or TASKQUEUE_TARGET (plain target), not both" >&2
    exit 4
  fi
  mode=(--taskqueue-target-cmd="$TASKQUEUE_TARGET_CMD")
  [[ -n "${TASKQUEUE_WORKER_CMD:-}" ]] && mode+=(--taskqueue-worker-cmd="$TASKQUEUE_WORKER_CMD")
  echo "taskqueue gate: full level: the harness runs the implementation against backends it owns"
elif [[ -n "${TASKQUEUE_TARGET:-}" ]]; then
  mode=(--taskqueue-target="$TASKQUEUE_TARGET")
  echo "taskqueue gate: plain-target mode (API level): the dead-letter queue, worker recovery," \
    "durability and fault rules are NOT checked; set TASKQUEUE_TARGET_CMD to check them"
else
  echo "ci/conformance.sh: set TASKQUEUE_TARGET_CMD (the command that starts your server; full level)" \
    "or TASKQUEUE_TARGET=host:port (a running server; API level)" >&2
  exit 4
fi
mkdir -p "$REPORT_DIR"

if [[ -n "${TASKQUEUE_PIP_SPEC-pytest-taskqueue}" ]]; then
  "$PYTHON" -m pip install --quiet "${TASKQUEUE_PIP_SPEC-pytest-taskqueue}"
fi

server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM -- "-$server_pid" 2>/dev/null || kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT INT TERM

if [[ -z "${TASKQUEUE_TARGET_CMD:-}" && -n "${TASKQUEUE_START_CMD:-}" ]]; then
  setsid bash -c "$TASKQUEUE_START_CMD" >"$REPORT_DIR/server.log" 2>&1 &
  server_pid=$!
  echo "started implementation (pid $server_pid), log: $REPORT_DIR/server.log"
fi

strict=()
[[ "${TASKQUEUE_STRICT:-0}" == "1" ]] && strict=(--taskqueue-strict)

# The plugin waits for the target's health check itself and stops with one line if it never answers.
# Run from an empty folder so only the bundled suite is collected; the harness's own processes are
# stopped by it on every exit path.
workdir="$(mktemp -d)"
report_abs="$(cd "$REPORT_DIR" && pwd)"
set +e
(cd "$workdir" && env -u TASKQUEUE_TARGET -u TASKQUEUE_TARGET_CMD -u TASKQUEUE_WORKER_CMD \
  "$PYTHON" -m pytest -p no:cacheprovider --pyargs scenarios "${mode[@]}" \
  --taskqueue-report="$report_abs/conformance.json" \
  --junitxml="$report_abs/junit.xml" "${strict[@]}" "$@")
status=$?
set -e
rmdir "$workdir" 2>/dev/null || true
if [[ -n "${GITHUB_STEP_SUMMARY:-}" && -f "$report_abs/conformance.md" ]]; then
  cat "$report_abs/conformance.md" >>"$GITHUB_STEP_SUMMARY"
fi
exit "$status"
