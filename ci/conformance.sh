#!/usr/bin/env bash
# Conformance gate for any CI: runs the pytest-taskqueue suite against your implementation.
#
#   TASKQUEUE_TARGET=127.0.0.1:50051 ci/conformance.sh          # a server you started already
#   TASKQUEUE_START_CMD="./my-server --port 50051" TASKQUEUE_TARGET=127.0.0.1:50051 ci/conformance.sh
#
# Environment:
#   TASKQUEUE_TARGET      host:port of the implementation (required)
#   TASKQUEUE_START_CMD   optional command that starts it; stopped when this script exits
#   TASKQUEUE_PIP_SPEC    what to pip install (default: pytest-taskqueue)
#   TASKQUEUE_REPORT_DIR  where reports go (default: taskqueue-reports)
#   TASKQUEUE_STRICT=1    optional scenarios fail the gate too
#   PYTHON                interpreter (default: python3)
# Writes $TASKQUEUE_REPORT_DIR/{junit.xml,conformance.json,conformance.md}. Exit status is pytest's:
# 0 conforming, 1 not conforming, anything else an infrastructure or usage error.
set -euo pipefail

: "${TASKQUEUE_TARGET:?set TASKQUEUE_TARGET=host:port of the implementation under test}"
PYTHON="${PYTHON:-python3}"
REPORT_DIR="${TASKQUEUE_REPORT_DIR:-taskqueue-reports}"
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

if [[ -n "${TASKQUEUE_START_CMD:-}" ]]; then
  setsid bash -c "$TASKQUEUE_START_CMD" >"$REPORT_DIR/server.log" 2>&1 &
  server_pid=$!
  echo "started implementation (pid $server_pid), log: $REPORT_DIR/server.log"
fi

strict=()
[[ "${TASKQUEUE_STRICT:-0}" == "1" ]] && strict=(--taskqueue-strict)

# The plugin waits for the target's health check itself and stops with one line if it never answers.
# Run from an empty folder so only the bundled suite is collected.
workdir="$(mktemp -d)"
report_abs="$(cd "$REPORT_DIR" && pwd)"
set +e
(cd "$workdir" && "$PYTHON" -m pytest -p no:cacheprovider \
  --taskqueue-target="$TASKQUEUE_TARGET" \
  --taskqueue-report="$report_abs/conformance.json" \
  --junitxml="$report_abs/junit.xml" "${strict[@]}" "$@")
status=$?
set -e
rmdir "$workdir" 2>/dev/null || true
if [[ -n "${GITHUB_STEP_SUMMARY:-}" && -f "$report_abs/conformance.md" ]]; then
  cat "$report_abs/conformance.md" >>"$GITHUB_STEP_SUMMARY"
fi
exit "$status"
