#!/usr/bin/env bash
# Stop the dockerd that ci/docker/start-dockerd.sh started (its pid file), and only that one.
# Waits, with a deadline, for it to exit; a dockerd started by anyone else is left alone.
set -euo pipefail

pid_file=${DOCKERD_PIDFILE:-/tmp/taskqueue-dockerd.pid}
wait_s=${DOCKERD_WAIT_S:-60}

say() { echo "stop-dockerd: $*" >&2; }

if [[ ! -f "$pid_file" ]]; then
    say "no pid file $pid_file: this script started no dockerd; nothing to stop"
    exit 0
fi
pid=$(cat "$pid_file")
if ! kill -0 "$pid" 2>/dev/null || [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" != dockerd ]]; then
    say "dockerd $pid is not running; removing the stale pid file"
    rm -f "$pid_file"
    exit 0
fi
kill -TERM "$pid"
deadline=$((SECONDS + wait_s))
while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
        say "dockerd $pid still runs after ${wait_s}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        break
    fi
    sleep 0.2
done
rm -f "$pid_file"
say "dockerd $pid stopped"
