#!/usr/bin/env bash
# How large is the f4a-indexer container image? Measured without Docker and without pulling
# gcr.io/distroless/cc-debian12 (neither is possible here), as faithfully as we can:
#
#   1. A replica of distroless/cc-debian12 is assembled from the same Debian 12 (bookworm)
#      packages distroless puts in that image (GoogleContainerTools/distroless: static/static.bzl,
#      base/config.bzl, cc/config.bzl, common/BUILD.bazel):
#        static: base-files netbase tzdata media-types, the ca-certificates.crt bundle (all of
#                /usr/share/ca-certificates concatenated, plus that package's copyright file; no
#                other ca-certificates file), /etc/passwd and /etc/group (root, nobody, nonroot
#                65532; tty, staff), /root, /home, /home/nonroot (65532, 0700), /tmp (1777),
#                /etc/nsswitch.conf, distroless's /etc/os-release;
#        base:   libc6 libssl3;        cc: gcc-12-base libgcc-s1 libgomp1 libstdc++6;
#        every package: /var/lib/dpkg/status.d/<pkg>/{control,md5sums} (for scanners).
#      Packages are fetched with `apt-get download` (the host must be bookworm, whose candidate
#      versions are what distroless's lock file pins, give or take its snapshot date) and unpacked
#      with `dpkg-deb -x`; no maintainer script runs (distroless runs none either).
#      Docs: distroless does NOT strip /usr/share/doc or /usr/share/man -- rules_distroless puts
#      each package's whole data.tar in the image -- so neither does the replica (the brief that
#      asked for this script assumed distroless keeps only copyright files; its build rules say
#      otherwise). The docs' share is logged.
#      The folder is cached in $F4A_CACHE/distroless-replica (F4A_CACHE defaults to
#      ~/.cache/f4a-indexer) and reused; F4A_REFRESH_REPLICA=1 rebuilds it (e.g. after a Debian
#      point release).
#   2. It is imported as localhost/distroless-cc-replica:bookworm (one layer; the real image
#      has one layer per package/tar) with distroless's nonroot config (USER 65532, WORKDIR
#      /home/nonroot, PATH, SSL_CERT_FILE); the import is reused while the folder is unchanged.
#   3. The Dockerfile's runtime stage is built verbatim with podman, except that FROM names the
#      replica and the binary comes from the build context instead of the builder stage:
#      $1, else $F4A_BINARY, else target-release/release/f4a-indexer. This script never runs
#      cargo: build the binary first.
#   4. One JSON object goes to stdout:
#        {"base_bytes", "image_bytes", "binary_bytes", "layers", "base"}
#      base_bytes/image_bytes are `podman image inspect --format '{{.Size}}'` (uncompressed,
#      what `docker images` shows); layers is the built image's layer count. Logs (including
#      gzip estimates of the compressed, registry-side sizes) go to stderr.
#   5. The built image is removed; the cached folder and the imported base stay.
#
# Exit codes: 0 measured, 77 skipped (podman, apt-get or dpkg-deb unusable here; reason on
# stderr), 1 error (e.g. no binary). First run ~6 s plus the ~6 MB download, then ~3 s.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${F4A_CACHE:-$HOME/.cache/f4a-indexer}"
REPLICA="$CACHE/distroless-replica"
BASE_TAG="localhost/distroless-cc-replica:bookworm"
TAG="localhost/f4a-indexer:image-size-$$"
BINARY="${1:-${F4A_BINARY:-$ROOT/target-release/release/f4a-indexer}}"
# Bump when the recipe below changes: invalidates the cached folder and the imported base.
RECIPE=1
# Whole packages, in distroless's layer order (static, base, cc). ca-certificates is handled apart.
PACKAGES=(base-files netbase tzdata media-types libc6 libssl3 gcc-12-base libgcc-s1 libgomp1 libstdc++6)

log() { echo "[image-size] $*" >&2; }
skip() { echo "SKIP: $*" >&2; exit 77; }
die() { echo "ERROR: $*" >&2; exit 1; }
mb() { awk -v b="$1" 'BEGIN {printf "%.1f MB", b/1e6}'; }

# ---------------------------------------------------------------- inputs

[[ "$BINARY" == /* ]] || BINARY="$PWD/$BINARY"
[[ -f "$BINARY" && -x "$BINARY" ]] \
  || die "no executable binary at $BINARY -- build it first (e.g. cargo build --release), or pass its path as \$1 or F4A_BINARY"
# shellcheck source=scripts/podman.sh
. "$ROOT/scripts/podman.sh"
BASE_IMAGE="$(runtime_base_image "$ROOT/Dockerfile")"
[[ -n "$BASE_IMAGE" ]] || die "$ROOT/Dockerfile has no 'FROM <image> AS runtime' stage"
[[ "$BASE_IMAGE" == gcr.io/distroless/cc-debian12* ]] \
  || log "warning: the runtime stage is FROM $BASE_IMAGE, but the replica is of distroless/cc-debian12"

# ---------------------------------------------------------------- podman

podman_setup

CTX="$(mktemp -d)"
cleanup() {
  local rc=$?
  podman rmi -f "$TAG" >/dev/null 2>&1 || true
  rm -rf "$CTX" "$REPLICA.tmp.$$"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- the replica folder

build_replica() {
  local tmp="$REPLICA.tmp.$$" arch deb pkg missing=()
  command -v apt-get >/dev/null || missing+=(apt-get)
  command -v dpkg-deb >/dev/null || missing+=(dpkg-deb)
  ((${#missing[@]} == 0)) || skip "${missing[*]} not available: cannot build the distroless replica"
  # shellcheck disable=SC1091
  [[ "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" == bookworm ]] \
    || skip "the host is not Debian 12 (bookworm): apt-get would fetch other package versions"
  arch="$(dpkg --print-architecture)"

  log "building the distroless/cc-debian12 replica in $REPLICA (first run only)"
  rm -rf "$tmp"
  mkdir -p "$tmp/debs" "$tmp/rootfs" "$tmp/control"
  if ! (cd "$tmp/debs" && apt-get download -q "${PACKAGES[@]}" ca-certificates >&2 2>"$tmp/apt.log"); then
    log "apt-get download failed ($(tail -1 "$tmp/apt.log")); running apt-get update"
    apt-get update -q >/dev/null 2>"$tmp/apt.log" || { cat "$tmp/apt.log" >&2; die "apt-get update failed"; }
    (cd "$tmp/debs" && apt-get download -q "${PACKAGES[@]}" ca-certificates >&2) || die "apt-get download failed"
  fi

  local R="$tmp/rootfs"
  for pkg in "${PACKAGES[@]}"; do
    deb="$(ls "$tmp/debs/${pkg}"_*.deb)"
    case "$(dpkg-deb -f "$deb" Architecture)" in all | "$arch") ;; *) die "$deb is not for $arch" ;; esac
    dpkg-deb -x "$deb" "$R"
    # What distroless adds for each package (rules_distroless dpkg_statusd): control and md5sums.
    rm -rf "$tmp/control/$pkg" && dpkg-deb -e "$deb" "$tmp/control/$pkg"
    mkdir -p "$R/var/lib/dpkg/status.d/$pkg"
    for f in control md5sums; do
      [[ -f "$tmp/control/$pkg/$f" ]] && cp "$tmp/control/$pkg/$f" "$R/var/lib/dpkg/status.d/$pkg/$f"
    done
    printf '%s=%s\n' "$pkg" "$(dpkg-deb -f "$deb" Version)" >>"$tmp/packages.txt"
  done

  # ca-certificates: only the bundle (every certificate the package ships, concatenated in path
  # order, as rules_distroless cacerts.sh does; mode 0555 like its mtree) and the copyright file.
  deb="$(ls "$tmp/debs/"ca-certificates_*.deb)"
  mkdir -p "$tmp/cacerts" "$R/etc/ssl/certs" "$R/usr/share/doc/ca-certificates"
  dpkg-deb -x "$deb" "$tmp/cacerts"
  find "$tmp/cacerts/usr/share/ca-certificates" -type f | LC_ALL=C sort | xargs cat >"$R/etc/ssl/certs/ca-certificates.crt"
  chmod 0555 "$R/etc/ssl/certs/ca-certificates.crt"
  cp "$tmp/cacerts/usr/share/doc/ca-certificates/copyright" "$R/usr/share/doc/ca-certificates/copyright"
  printf 'ca-certificates=%s (bundle only)\n' "$(dpkg-deb -f "$deb" Version)" >>"$tmp/packages.txt"

  # Users, groups and directories (common/BUILD.bazel), nsswitch.conf, os-release.
  cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$R/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
  chmod 0644 "$R/etc/passwd" "$R/etc/group"
  cat >"$R/etc/nsswitch.conf" <<'EOF'
# /etc/nsswitch.conf
#
# Example configuration of GNU Name Service Switch functionality.
# If you have the `glibc-doc-reference' and `info' packages installed, try:
# `info libc "Name Service Switch"' for information about this file.

passwd:         compat
group:          compat
shadow:         compat
gshadow:        files

hosts:          files dns
networks:       files

protocols:      db files
services:       db files
ethers:         db files
rpc:            db files

netgroup:       nis
EOF
  rm -f "$R/etc/os-release"   # base-files' symlink; distroless ships its own file
  cat >"$R/etc/os-release" <<'EOF'
PRETTY_NAME="Distroless"
NAME="Debian GNU/Linux"
ID="debian"
VERSION_ID="12"
VERSION="Debian GNU/Linux 12 (bookworm)"
HOME_URL="https://github.com/GoogleContainerTools/distroless"
SUPPORT_URL="https://github.com/GoogleContainerTools/distroless/blob/master/README.md"
BUG_REPORT_URL="https://github.com/GoogleContainerTools/distroless/issues/new"
EOF
  mkdir -p "$R/tmp" "$R/root" "$R/home/nonroot"
  chmod 1777 "$R/tmp"
  chmod 0700 "$R/root" "$R/home/nonroot"
  chmod 0755 "$R/home"

  echo "$RECIPE" >"$tmp/recipe"
  rm -rf "$tmp/debs" "$tmp/control" "$tmp/cacerts" "$tmp/apt.log"
  rm -rf "$REPLICA"
  mv -T "$tmp" "$REPLICA"
}

if [[ "${F4A_REFRESH_REPLICA:-0}" == 1 || "$(cat "$REPLICA/recipe" 2>/dev/null)" != "$RECIPE" \
      || ! -s "$REPLICA/packages.txt" || ! -d "$REPLICA/rootfs/usr" ]]; then
  build_replica
else
  log "reusing the replica folder $REPLICA"
fi
PKG_LIST="$(paste -sd, "$REPLICA/packages.txt" | sed 's/,/, /g')"

# ---------------------------------------------------------------- the replica image

# The import is tied to the folder's content list and the recipe through a label.
REPLICA_ID="$(cat "$REPLICA/recipe" "$REPLICA/packages.txt" | sha256sum | cut -c1-16)"
if [[ "$(podman image inspect --format '{{index .Config.Labels "f4a.distroless-replica"}}' "$BASE_TAG" 2>/dev/null)" != "$REPLICA_ID" ]]; then
  log "importing $REPLICA/rootfs as $BASE_TAG"
  # Owned by root except /home/nonroot (65532), whoever runs this; appended entries win.
  tar -C "$REPLICA/rootfs" --sort=name --numeric-owner --owner=0 --group=0 \
    --exclude=./home/nonroot -cf "$CTX/rootfs.tar" .
  tar -C "$REPLICA/rootfs" --numeric-owner --owner=65532 --group=65532 -rf "$CTX/rootfs.tar" ./home/nonroot
  gzip -6 -c "$CTX/rootfs.tar" | wc -c >"$REPLICA/gzip_bytes.tmp" && mv -f "$REPLICA/gzip_bytes.tmp" "$REPLICA/gzip_bytes"
  podman import -q \
    --change 'USER 65532' \
    --change 'WORKDIR /home/nonroot' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change "LABEL f4a.distroless-replica=$REPLICA_ID" \
    "$CTX/rootfs.tar" "$BASE_TAG" >/dev/null
  rm -f "$CTX/rootfs.tar"
else
  log "reusing the imported $BASE_TAG"
fi

# ---------------------------------------------------------------- the runtime stage

cp "$BINARY" "$CTX/f4a-indexer"
runtime_containerfile "$ROOT/Dockerfile" "$CTX/Containerfile" "$BASE_TAG"
log "building the runtime stage with $BINARY ($(mb "$(stat -c %s "$CTX/f4a-indexer")"))"
# --format docker keeps HEALTHCHECK; --layers=false leaves no intermediate images behind.
podman build -q --format docker --layers=false --pull=never --network host \
  -f "$CTX/Containerfile" -t "$TAG" "$CTX" >/dev/null

# Does the binary start on the replica (its shared libraries are all there)? Informational.
if out="$(podman run --rm --network host --read-only --no-healthcheck "$TAG" --version 2>"$CTX/run.err")"; then
  log "runs on the replica: $out"
else
  log "warning: '$TAG --version' failed on the replica: $(tail -1 "$CTX/run.err")"
fi

# ---------------------------------------------------------------- measure

size() { podman image inspect --format '{{.Size}}' "$1"; }
BASE_BYTES="$(size "$BASE_TAG")"
IMAGE_BYTES="$(size "$TAG")"
BINARY_BYTES="$(stat -c %s "$CTX/f4a-indexer")"   # the copy that went in (the original may be rebuilt meanwhile)
LAYERS="$(podman image inspect --format '{{len .RootFS.Layers}}' "$TAG")"

docs="$(du -sb "$REPLICA/rootfs/usr/share/doc" "$REPLICA/rootfs/usr/share/man" 2>/dev/null | awk '{s+=$1} END {print s+0}')"
log "base $(mb "$BASE_BYTES") (of which /usr/share/doc + man $(mb "$docs")), image $(mb "$IMAGE_BYTES"), binary $(mb "$BINARY_BYTES"), $LAYERS layers"
if [[ -s "$REPLICA/gzip_bytes" ]]; then
  log "compressed (gzip -6, ~ registry/pull size): base $(mb "$(cat "$REPLICA/gzip_bytes")"), binary layer $(mb "$(gzip -6 -c "$CTX/f4a-indexer" | wc -c)")"
fi

json_str() { local s="${1//\\/\\\\}"; printf '"%s"' "${s//\"/\\\"}"; }
printf '{"base_bytes": %s, "image_bytes": %s, "binary_bytes": %s, "layers": %s, "base": %s}\n' \
  "$BASE_BYTES" "$IMAGE_BYTES" "$BINARY_BYTES" "$LAYERS" \
  "$(json_str "distroless/cc-debian12 replica from Debian packages: $PKG_LIST")"
