#!/usr/bin/env bash
# Builds the release into dist/ (see docs/deploy.md):
#   roomengine_<version>_<os>_<arch>.tar.gz   static binary, README.md, LICENSE, app.yaml
#   roomengine_<version>_<arch>.deb           Debian package, built by nfpm
#   SHA256SUMS                                sha256sum format, bare file names
# <version> is scripts/version.sh's. Knobs (environment):
#   PLATFORMS  archives to build (default "linux/amd64 linux/arm64 darwin/arm64")
#   DEB_ARCHS  Debian packages to build (default "amd64 arm64"; "" for none)
#   DIST       output folder (default dist)
# `package.sh binary OS/ARCH` only builds dist/bin/OS_ARCH/appserver (for `make image`) and
# prints its path.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
DIST=${DIST:-dist}
PLATFORMS=${PLATFORMS-linux/amd64 linux/arm64 darwin/arm64}
DEB_ARCHS=${DEB_ARCHS-amd64 arm64}
VERSION=$(scripts/version.sh)
COMMIT=$(git rev-parse HEAD)
[ -z "$(git status --porcelain --untracked-files=no)" ] || COMMIT+="+dirty"
# The commit's time, not the clock: the same commit builds the same files (SOURCE_DATE_EPOCH
# as in reproducible-builds.org).
EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
DATE=$(date -u -d "@$EPOCH" +%Y-%m-%dT%H:%M:%SZ)

# binary OS ARCH: a static, stripped appserver stamped with the version, in dist/bin/OS_ARCH.
binary() {
  local out="$DIST/bin/$1_$2/appserver"
  mkdir -p "$(dirname "$out")"
  local pkg=roomengine/internal/version
  CGO_ENABLED=0 GOOS=$1 GOARCH=$2 "$GO" build -trimpath -buildvcs=false \
    -ldflags "-s -w -X $pkg.Version=$VERSION -X $pkg.Commit=$COMMIT -X $pkg.Date=$DATE" \
    -o "$out" ./cmd/appserver
  echo "$out"
}

if [ "${1:-}" = binary ]; then
  binary "${2%/*}" "${2#*/}"
  exit 0
fi

rm -rf "$DIST"
mkdir -p "$DIST"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# tar with fixed owners, order and times, gzip without a timestamp: reproducible archives.
tarball() { # NAME DIR FILES...
  local name=$1 dir=$2
  shift 2
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" -C "$dir" -cf - "$@" |
    gzip -9n >"$DIST/$name"
}

files=()
for platform in $PLATFORMS; do
  os=${platform%/*} arch=${platform#*/}
  bin=$(binary "$os" "$arch")
  name="roomengine_${VERSION}_${os}_${arch}"
  mkdir -p "$stage/$name"
  cp "$bin" "$stage/$name/appserver"
  cp README.md LICENSE deploy/app.yaml "$stage/$name/"
  tarball "$name.tar.gz" "$stage" "$name"
  files+=("$name.tar.gz")
  echo "built $DIST/$name.tar.gz"
done

if [ -n "$DEB_ARCHS" ]; then
  nfpm=$(GO=$GO scripts/tool.sh nfpm)
  # What the package adds to the repository's files: the unit pointing at /usr/bin, the
  # Debian changelog of this version and the copyright file.
  sed 's|/usr/local/bin/appserver|/usr/bin/appserver|g' deploy/roomengine.service >"$stage/roomengine.service"
  cat >"$stage/changelog" <<CHANGELOG
roomengine ($VERSION) unstable; urgency=medium

  * Release $VERSION, built from commit ${COMMIT:0:12}.

 -- roomengine maintainers <roomengine@example.com>  $(date -u -R -d "@$EPOCH")
CHANGELOG
  gzip -9n <"$stage/changelog" >"$stage/changelog.gz"
  cp deploy/debian/copyright "$stage/copyright"
  for arch in $DEB_ARCHS; do
    bin=$(binary linux "$arch")
    deb="roomengine_${VERSION}_${arch}.deb"
    VERSION=$VERSION DEB_ARCH=$arch BINARY=$bin STAGE=$stage SOURCE_DATE_EPOCH=$EPOCH \
      "$nfpm" package --config deploy/debian/nfpm.yaml --packager deb --target "$DIST/$deb" >/dev/null
    files+=("$deb")
    echo "built $DIST/$deb"
  done
fi

(cd "$DIST" && sha256sum "${files[@]}" >SHA256SUMS)
echo "built $DIST/SHA256SUMS (version $VERSION)"
