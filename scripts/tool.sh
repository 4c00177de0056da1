#!/usr/bin/env bash
# Prints the path of a packaging tool at its pinned version, building it first with
# `go install` when it is not there yet: nfpm (the Debian packages) or helm (the chart's lint
# and test). Tools go to TOOLS_DIR (default ~/.cache/roomengine-tools), outside the
# repository, one folder per version, and nothing is added to the project's go.mod; a
# rebuild after `rm -rf` of that folder comes mostly from the Go build cache.
set -euo pipefail
GO=${GO:-go}
TOOLS_DIR=${TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/roomengine-tools}
case "${1:-}" in
  nfpm) pkg=github.com/goreleaser/nfpm/v2/cmd/nfpm version=v2.48.0 ;;
  helm) pkg=helm.sh/helm/v4/cmd/helm version=v4.3.2 ;;
  *) echo "usage: $0 nfpm|helm" >&2; exit 2 ;;
esac
dir="$TOOLS_DIR/$1@$version"
if [ ! -x "$dir/$1" ]; then
  echo "building $1 $version into $dir (once)" >&2
  mkdir -p "$dir"
  # Outside any module, so the tool's own go.mod decides its dependencies.
  (cd "$dir" && GOBIN="$dir" GOFLAGS= CGO_ENABLED=0 "$GO" install "$pkg@$version") >&2
fi
echo "$dir/$1"
