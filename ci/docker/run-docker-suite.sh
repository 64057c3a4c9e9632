#!/usr/bin/env bash
# The docker backend, end to end, on this machine:
#   1. a Docker engine (ci/docker/start-dockerd.sh: installs docker.io, starts dockerd if needed);
#   2. the test images (ci/docker/build-images.sh: built locally, skipped when present);
#   3. the docker backend's own tests (tests/docker), which must not skip here;
#   4. the bundled conformance suite against the reference server on --taskqueue-backend=docker;
#   5. a check that no container or network of the toolkit is left;
#   6. the dockerd this script started is stopped again (KEEP_DOCKERD=1 keeps it).
#
# Environment: PYTEST_ARGS (extra arguments for step 4, e.g. "-n 2"), REPORT (default
# reports/docker-conformance.json), KEEP_DOCKERD.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"
python=${PYTHON:-python3}
pid_file=${DOCKERD_PIDFILE:-/tmp/taskqueue-dockerd.pid}
export DOCKERD_PIDFILE=$pid_file

say() { echo "run-docker-suite: $*" >&2; }

started_dockerd=0
[[ -f "$pid_file" ]] || started_dockerd=1
"$here/start-dockerd.sh"
[[ -f "$pid_file" ]] || started_dockerd=0
cleanup() {
    local status=$?
    if [[ "$started_dockerd" == 1 && "${KEEP_DOCKERD:-0}" != 1 ]]; then
        "$here/stop-dockerd.sh" || true
    fi
    exit "$status"
}
trap cleanup EXIT

"$here/build-images.sh"

# The images the docker backend runs here (the real defaults cannot be pulled: no registry).
export TASKQUEUE_DYNAMODB_IMAGE=${TASKQUEUE_DYNAMODB_IMAGE:-taskqueue-test/dynamodb:moto}
export TASKQUEUE_ELASTICMQ_IMAGE=${TASKQUEUE_ELASTICMQ_IMAGE:-taskqueue-test/elasticmq:1.6.16}
export TASKQUEUE_TOXIPROXY_IMAGE=${TASKQUEUE_TOXIPROXY_IMAGE:-taskqueue-test/toxiproxy:2.12.0}

leftovers() {
    docker ps -a -q --filter label=org.pytest-taskqueue.set
    docker network ls -q --filter label=org.pytest-taskqueue.set
}

say "tests/docker (the docker backend's own tests; none may skip here)"
"$python" -m pytest -p no:cacheprovider -q -rs tests/docker -W error::pytest.PytestUnraisableExceptionWarning \
    | tee /tmp/taskqueue-docker-tests.log
if grep -q '^SKIPPED' /tmp/taskqueue-docker-tests.log; then
    say "some docker tests skipped although a daemon and the images are here"
    exit 1
fi

report=${REPORT:-reports/docker-conformance.json}
say "the bundled conformance suite on --taskqueue-backend=docker"
start=$SECONDS
# shellcheck disable=SC2086 # PYTEST_ARGS is a list of words on purpose
"$python" -m pytest --pyargs scenarios -p no:cacheprovider --taskqueue-backend=docker \
    --taskqueue-report="$report" ${PYTEST_ARGS:-}
say "conformance suite on the docker backend passed in $((SECONDS - start)) s (report: $report)"

left=$(leftovers)
if [[ -n "$left" ]]; then
    say "containers or networks left behind:"
    docker ps -a --filter label=org.pytest-taskqueue.set >&2
    exit 1
fi
say "no container or network left"
