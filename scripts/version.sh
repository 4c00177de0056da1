#!/usr/bin/env bash
# Prints the release version of the checkout: `git describe --tags` without a leading "v"
# (commits after a tag become 1.4.0+3.gabc1234, which Debian sorts after 1.4.0), or
# 0.0.0~git<commit date, UTC, YYYYMMDD>.<short commit> where no tag exists (sorts before any
# release). VERSION in the environment wins.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${VERSION:-}" ]; then
  echo "$VERSION"
  exit 0
fi
if tag=$(git describe --tags 2>/dev/null); then
  tag=${tag#v}
  if [[ $tag =~ ^(.*)-([0-9]+)-g([0-9a-f]+)$ ]]; then
    tag="${BASH_REMATCH[1]}+${BASH_REMATCH[2]}.g${BASH_REMATCH[3]}"
  fi
  echo "$tag"
else
  echo "0.0.0~git$(TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d).$(git rev-parse --short=7 HEAD)"
fi
