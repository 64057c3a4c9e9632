#!/usr/bin/env bash
# Make a Docker engine answer on this machine, for the docker backend's tests.
#
# - installs Debian's docker.io (dockerd, containerd, runc) when dockerd is missing;
# - starts `dockerd --iptables=false` in the background when `docker info` does not answer
#   (no iptables on these machines: published ports go through dockerd's userland proxy);
# - waits (probing `docker info`, with a deadline) until the engine answers.
#
# Idempotent: an engine that already answers is left alone. Prints the pid file's path of a
# dockerd it started, so a CI step can stop it afterwards (ci/docker/stop-dockerd.sh).
#
# Environment: DOCKERD_LOG (default /tmp/taskqueue-dockerd.log), DOCKERD_PIDFILE (default
# /tmp/taskqueue-dockerd.pid), DOCKERD_WAIT_S (default 60).
set -euo pipefail

log_file=${DOCKERD_LOG:-/tmp/taskqueue-dockerd.log}
pid_file=${DOCKERD_PIDFILE:-/tmp/taskqueue-dockerd.pid}
wait_s=${DOCKERD_WAIT_S:-60}

say() { echo "start-dockerd: $*" >&2; }

if docker info >/dev/null 2>&1; then
    say "a Docker engine already answers; leaving it alone"
    exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
    if ! command -v apt-get >/dev/null 2>&1; then
        say "dockerd is missing and apt-get is not available: install Docker yourself"
        exit 1
    fi
    say "installing Debian's docker.io (dockerd, containerd, runc)..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi

# A stale pid file from a dockerd that died leaves a socket that answers nothing; dockerd
# refuses to start while its own pid file (/var/run/docker.pid) names a live process, so only
# a dead one is cleared here.
if [[ -f /var/run/docker.pid ]] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
fi

say "starting dockerd --iptables=false (log: $log_file)"
# setsid: dockerd must not get the caller's Ctrl-C or die with the CI step's process group.
setsid dockerd --iptables=false >"$log_file" 2>&1 </dev/null &
echo $! >"$pid_file"

deadline=$((SECONDS + wait_s))
until docker info >/dev/null 2>&1; do
    if ! kill -0 "$(cat "$pid_file")" 2>/dev/null; then
        say "dockerd exited during start-up; log tail:"
        tail -n 30 "$log_file" >&2
        exit 1
    fi
    if ((SECONDS >= deadline)); then
        say "dockerd did not answer within ${wait_s}s; log tail:"
        tail -n 30 "$log_file" >&2
        exit 1
    fi
    sleep 0.2
done
say "Docker engine ready (dockerd pid $(cat "$pid_file"), pid file $pid_file)"
