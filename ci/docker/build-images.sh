#!/usr/bin/env bash
# Build, locally, the images the docker backend's tests run, from what the package registries
# here give (no image registry is reachable, so `docker pull` is not an option):
#
#   taskqueue-test/base:bookworm      Debian bookworm minbase (debootstrap), `docker import`ed
#   taskqueue-test/toxiproxy:2.12.0   Shopify's Toxiproxy, built with `go install` (static), imported
#   taskqueue-test/elasticmq:1.6.16   ElasticMQ's Maven Central jars on Debian's JRE 17
#   taskqueue-test/dynamodb:moto      moto's server (DynamoDB only, requests serialised: the
#                                     local backend's pytest_taskqueue/_moto*.py), standing in
#                                     for DynamoDB Local, which is not open source
#
# Idempotent: every image carries a label with a hash of its inputs (recipe files, versions); an
# image whose tag exists with the same hash is skipped, a changed input rebuilds it (FORCE=1
# rebuilds all). Needs a Docker engine
# that answers (ci/docker/start-dockerd.sh), root for debootstrap, Maven, Go and pip.
# Staging folders live under $TASKQUEUE_CACHE_DIR/docker-build (default ~/.cache/pytest-taskqueue).
#
# Image builds use `--network=host`: dockerd runs with --iptables=false here, so containers on
# the default bridge have no route out, and the apt steps need one.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${TASKQUEUE_CACHE_DIR:-$HOME/.cache/pytest-taskqueue}
stage=$cache/docker-build
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
python=${PYTHON:-python3}

BASE=taskqueue-test/base:bookworm
TOXIPROXY=taskqueue-test/toxiproxy:2.12.0
ELASTICMQ=taskqueue-test/elasticmq:1.6.16
DYNAMODB=taskqueue-test/dynamodb:moto
MOTO_VERSION=${MOTO_VERSION:-$("$python" -c 'import importlib.metadata as m; print(m.version("moto"))')}

INPUTS_LABEL=org.pytest-taskqueue.inputs

say() { echo "build-images: $*" >&2; }
# A short hash of an image's inputs: the named files' contents and extra strings (versions).
inputs_of() {
    case $1 in
    "$BASE") echo "bookworm minbase $mirror" ;;
    "$TOXIPROXY") "$python" -c 'from fault_injection import TOXIPROXY_VERSION; print(TOXIPROXY_VERSION)' ;;
    "$ELASTICMQ")
        cat "$here/images/elasticmq/Dockerfile" "$here/images/elasticmq/pom.xml"
        docker image inspect -f '{{.Id}}' "$BASE"
        ;;
    "$DYNAMODB")
        cat "$here/images/dynamodb-moto/Dockerfile" "$repo"/pytest_taskqueue/_moto*.py
        echo "moto $MOTO_VERSION"
        docker image inspect -f '{{.Id}}' "$BASE"
        ;;
    esac | sha256sum | cut -c1-16
}
have() {
    [[ "${FORCE:-0}" != 1 ]] || return 1
    local found
    found=$(docker image inspect -f "{{index .Config.Labels \"$INPUTS_LABEL\"}}" "$1" 2>/dev/null) || return 1
    [[ "$found" == "$(inputs_of "$1")" ]]
}
timed() {
    local name=$1 start=$SECONDS
    shift
    "$@"
    say "$name built in $((SECONDS - start)) s"
}
# The legacy builder: it needs no buildx plugin, and it can use a local image as FROM.
build() {
    local tag=$1
    shift
    DOCKER_BUILDKIT=0 docker build --quiet --network=host --label "$INPUTS_LABEL=$(inputs_of "$tag")" \
        -t "$tag" "$@" >/dev/null
}

mkdir -p "$stage"

build_base() {
    command -v debootstrap >/dev/null || {
        say "installing debootstrap..."
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    local root=$stage/rootfs-bookworm
    rm -rf "$root"
    say "debootstrap --variant=minbase bookworm (a few minutes)..."
    debootstrap --variant=minbase bookworm "$root" "$mirror" >"$stage/debootstrap.log" 2>&1 || {
        tail -n 20 "$stage/debootstrap.log" >&2
        exit 1
    }
    # Smaller image: no apt lists, no caches; apt-get update runs again in each image that needs it.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" -c . | docker import --change 'CMD ["/bin/bash"]' \
        --change "LABEL $INPUTS_LABEL=$(inputs_of "$BASE")" - "$BASE" >/dev/null
    rm -rf "$root"
}

build_toxiproxy() {
    # The same binary the local stack uses, built into the cache by fault_injection.
    local binary
    binary=$(cd "$repo" && "$python" -c 'import pathlib, sys
from fault_injection import ensure_toxiproxy
print(ensure_toxiproxy(pathlib.Path(sys.argv[1])))' "$cache")
    local root=$stage/toxiproxy-root
    rm -rf "$root" && mkdir -p "$root/tmp"
    chmod 1777 "$root/tmp"
    # Same path as in Shopify's image, so either image takes the same command.
    install -m 0755 "$binary" "$root/toxiproxy"
    tar -C "$root" -c . | docker import \
        --change 'ENTRYPOINT ["/toxiproxy"]' \
        --change 'CMD ["-host=0.0.0.0"]' \
        --change 'EXPOSE 8474' \
        --change "LABEL $INPUTS_LABEL=$(inputs_of "$TOXIPROXY")" \
        - "$TOXIPROXY" >/dev/null
    rm -rf "$root"
}

build_elasticmq() {
    local ctx=$stage/elasticmq
    rm -rf "$ctx" && mkdir -p "$ctx/lib"
    cp "$here/images/elasticmq/Dockerfile" "$ctx/"
    say "resolving ElasticMQ's jars with Maven..."
    mvn -q -B -f "$here/images/elasticmq/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$ctx/lib" >"$stage/elasticmq-mvn.log" 2>&1 || {
        tail -n 30 "$stage/elasticmq-mvn.log" >&2
        exit 1
    }
    build "$ELASTICMQ" "$ctx"
}

build_dynamodb() {
    local ctx=$stage/dynamodb-moto
    rm -rf "$ctx" && mkdir -p "$ctx/wheels"
    cp "$here/images/dynamodb-moto/Dockerfile" "$ctx/"
    mkdir -p "$ctx/pytest_taskqueue"
    : >"$ctx/pytest_taskqueue/__init__.py"
    cp "$repo"/pytest_taskqueue/_moto*.py "$ctx/pytest_taskqueue/"
    # Wheels are built on the host (its pip reaches PyPI as configured here) for the image's
    # CPython 3.11; the image installs them with --no-index.
    printf '%s\n' "moto[dynamodb]==$MOTO_VERSION" flask flask-cors >"$ctx/wheels/requirements.txt"
    say "building wheels for moto $MOTO_VERSION..."
    "$python" -m pip wheel --quiet --wheel-dir "$ctx/wheels" -r "$ctx/wheels/requirements.txt" \
        >"$stage/dynamodb-pip.log" 2>&1 || {
        tail -n 30 "$stage/dynamodb-pip.log" >&2
        exit 1
    }
    build "$DYNAMODB" "$ctx"
}

for pair in "$BASE:build_base" "$TOXIPROXY:build_toxiproxy" "$ELASTICMQ:build_elasticmq" "$DYNAMODB:build_dynamodb"; do
    image=${pair%:*}
    step=${pair##*:}
    if have "$image"; then
        say "$image is up to date; skipped"
    else
        previous=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
        timed "$image" "$step"
        # The image this one replaces, now untagged (kept if a container or another tag uses it).
        if [[ -n "$previous" && "$previous" != "$(docker image inspect -f '{{.Id}}' "$image")" ]]; then
            docker rmi "$previous" >/dev/null 2>&1 || true
        fi
    fi
done
say "images ready: $BASE $TOXIPROXY $ELASTICMQ $DYNAMODB"
