#!/usr/bin/env bash
# Builds the container image roomengine:<version> (and :latest; "~" and "+" of the version
# become "-" in the tag) from Containerfile, with the
# static linux binary of this machine's architecture (or IMAGE_ARCH) built outside the image.
# The engine: docker when `docker info` reaches a running daemon, else podman (installed from
# Debian's packages when missing). Knobs (environment):
#   PODMAN     the podman command line (default: podman --storage-driver vfs --cgroup-manager
#              cgroupfs, which builds in unprivileged containers and CI machines too)
#   IMAGE      the repository name (default roomengine)
#   IMAGE_ARCH amd64 or arm64 (default: this machine's)
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
IMAGE=${IMAGE:-roomengine}
IMAGE_ARCH=${IMAGE_ARCH:-$("$GO" env GOARCH)}
VERSION=$(scripts/version.sh)
# An image tag allows [A-Za-z0-9_.-] only: 0.0.0~git20261207.a943c98 is tagged
# 0.0.0-git20261207.a943c98 (the label org.opencontainers.image.version keeps the version).
TAG=${VERSION//[~+]/-}

if [ -z "${PODMAN:-}" ] && command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  engine=(docker)
else
  command -v podman >/dev/null || scripts/test-deps.sh podman
  read -r -a engine <<<"${PODMAN:-podman --storage-driver vfs --cgroup-manager cgroupfs}"
fi

bin=$(scripts/package.sh binary "linux/$IMAGE_ARCH")
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$bin" "$ctx/appserver"
mkdir "$ctx/data"
# The CA bundle of this machine (Debian's ca-certificates): the Aliyun APIs are HTTPS.
[ -f /etc/ssl/certs/ca-certificates.crt ] || scripts/test-deps.sh ca-certificates
cp /etc/ssl/certs/ca-certificates.crt "$ctx/"

"${engine[@]}" build --file Containerfile --platform "linux/$IMAGE_ARCH" \
  --build-arg VERSION="$VERSION" --build-arg REVISION="$(git rev-parse HEAD)" \
  --build-arg CREATED="$(date -u -d "@$(git log -1 --format=%ct)" +%Y-%m-%dT%H:%M:%SZ)" \
  --tag "$IMAGE:$TAG" --tag "$IMAGE:latest" "$ctx" >&2
echo "$IMAGE:$TAG"
