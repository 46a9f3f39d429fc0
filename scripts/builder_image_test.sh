#!/usr/bin/env bash
# Builds the Dockerfile's chef -> planner -> builder stages with podman, without Docker and without
# pulling rust:*: a stand-in for `rust:<RUST_VERSION>-slim-bookworm` is made from the Debian
# bookworm rootfs that tests/deploy/container_test.sh debootstraps (run `make test-deploy` once
# first), this machine's Rust toolchain and Debian's gcc, and imported under the official name.
# Then `podman build --target builder` runs the stages verbatim (cargo install cargo-chef, cargo
# chef cook, cargo build --release --locked) and the built binary must print its version.
#
#   scripts/builder_image_test.sh          # ~10-15 min on 2 cores (a release build with fat LTO)
#
# Not part of `make test` (too slow for every run). The stand-in has this machine's rustc, which
# may be newer than RUST_VERSION. Where crates.io is reached through a TLS-intercepting proxy, the
# CA bundle named by SSL_CERT_FILE is added to the stand-in (the real rust image needs no such
# thing on an ordinary network).
# Exit codes: 0 built, 77 skipped (podman or the rootfs missing; reason printed), else failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${F4A_CACHE:-$HOME/.cache/f4a-indexer}"
ROOTFS="${F4A_BASE_IMAGE_DIR:-$CACHE/base-image}/rootfs.tar"
RUST_VERSION="$(sed -n 's/^ARG RUST_VERSION=//p' "$ROOT/Dockerfile")"
RUST_IMAGE="docker.io/library/rust:${RUST_VERSION}-slim-bookworm"
TAG="localhost/f4a-indexer:builder-test-$$"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

log() { echo "[builder-test] $*" >&2; }
skip() { echo "SKIP: $*" >&2; exit 77; }
die() { echo "FAIL: $*" >&2; exit 1; }

[[ -f "$ROOTFS" ]] || skip "no bookworm rootfs at $ROOTFS (run make test-deploy once)"
# shellcheck source=scripts/podman.sh
. "$ROOT/scripts/podman.sh"
podman_setup

toolchain="$(rustc --print sysroot)"
log "stand-in for $RUST_IMAGE: bookworm rootfs + $toolchain + gcc"
mkdir -p "$WORK/root/usr/local/rust" "$WORK/root/usr/local/cargo" "$WORK/ctx"
tar -C "$WORK/root" -xf "$ROOTFS"
cp -a "$toolchain/bin" "$toolchain/lib" "$WORK/root/usr/local/rust/"
tar -C "$WORK/root" -cf "$WORK/rootfs.tar" .
rm -rf "$WORK/root"
podman import \
  --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV CARGO_HOME=/usr/local/cargo' \
  "$WORK/rootfs.tar" localhost/f4a-rust-standin:stage0 >/dev/null
rm -f "$WORK/rootfs.tar"
{
  echo 'FROM localhost/f4a-rust-standin:stage0'
  echo 'RUN apt-get update -q && apt-get install -y -q --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*'
  if [[ -n "${SSL_CERT_FILE:-}" && -f "$SSL_CERT_FILE" ]]; then
    cp "$SSL_CERT_FILE" "$WORK/ctx/ca.crt"
    echo 'COPY ca.crt /etc/ssl/certs/ca-certificates.crt'
    echo 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt'
  fi
} >"$WORK/Containerfile"
podman build -q --network host -t "$RUST_IMAGE" -f "$WORK/Containerfile" "$WORK/ctx" >/dev/null

log "podman build --target builder (cargo-chef, dependencies, the crate; release)"
started=$SECONDS
podman build --network host --target builder -t "$TAG" "$ROOT" >&2
log "built in $((SECONDS - started)) s"
version="$(podman run --rm "$TAG" /app/target/release/f4a-indexer --version)"
podman rmi -f "$TAG" >/dev/null 2>&1 || true
[[ "$version" == "f4a-indexer "* ]] || die "unexpected --version output: $version"
log "ok: $version"
