#!/usr/bin/env bash
# Container test without a Docker engine: build the Dockerfile's runtime stage with podman and
# run it against the local stack.
#
#   - the base image (gcr.io/distroless/cc-debian12:nonroot) cannot be pulled here, so a minimal
#     Debian bookworm (debootstrap --variant=minbase + ca-certificates, same glibc 2.36 as
#     distroless/cc-debian12) is created once, cached in $F4A_CACHE/base-image (or
#     $F4A_BASE_IMAGE_DIR), and imported
#     under that name;
#   - the runtime stage is taken verbatim from ./Dockerfile except that the binary comes from
#     the local build ($F4A_BINARY, default target/debug/f4a-indexer) instead of the builder
#     stage (the builder stages need rust:* images; they are not exercised here);
#   - the container runs with --network host --runtime runc --read-only, indexes the demo
#     fixtures (Firehose -> S3 -> SQS -> worker) into indices of its own on the stack's search
#     engine (a real OpenSearch node by default, see scripts/stack.sh), and its HEALTHCHECK
#     (`f4a-indexer healthcheck`) must pass; `podman stop` must end it with exit code 0.
#
# Exit codes: 0 passed, 77 skipped (podman cannot run here; the reason is printed), else failed.
# Needs: the local stack (scripts/stack.sh start), root or apt for installing podman/debootstrap.
# First run ~2-4 min (debootstrap), then ~30-60 s.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${F4A_CACHE:-$HOME/.cache/f4a-indexer}"
BASE_DIR="${F4A_BASE_IMAGE_DIR:-$CACHE/base-image}"
BINARY="${F4A_BINARY:-$ROOT/target/debug/f4a-indexer}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
TAG="localhost/f4a-indexer:podman-test"
NAME="f4a-ctest-$$"

log() { echo "[container-test] $*" >&2; }
skip() { echo "SKIP: $*" >&2; exit 77; }
die() { echo "FAIL: $*" >&2; exit 1; }

# ---------------------------------------------------------------- tools

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
  if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing ${missing[*]} (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends podman runc debootstrap uidmap >/dev/null \
      || skip "apt-get install ${missing[*]} failed"
  else
    skip "${missing[*]} not installed and cannot install (needs root and apt-get)"
  fi
fi

# shellcheck source=scripts/podman.sh
. "$ROOT/scripts/podman.sh"
podman_setup
PODMAN=(podman)

# ---------------------------------------------------------------- inputs

eval "$("$ROOT/scripts/stack.sh" env)"
PY="$F4A_VENV/bin/python"
[[ -x "$BINARY" ]] || die "no binary at $BINARY (cargo build first)"
# Captured first: `… | grep -q` under pipefail fails when grep exits before the writer does.
help_text="$("$BINARY" --help 2>/dev/null || true)"
[[ "$help_text" == *healthcheck* ]] || die "$BINARY has no healthcheck subcommand"
curl -fsS --max-time 3 "$AWS_ENDPOINT_URL/_localstack/health" >/dev/null || die "LocalStack not running (scripts/stack.sh start)"

BASE_IMAGE="$(runtime_base_image "$ROOT/Dockerfile")"
[[ -n "$BASE_IMAGE" ]] || die "Dockerfile has no 'FROM <image> AS runtime' stage"

# ---------------------------------------------------------------- base image

if [[ ! -f "$BASE_DIR/rootfs.tar" ]]; then
  mkdir -p "$BASE_DIR"
  if [[ ! -f "$BASE_DIR/rootfs.tmp/etc/os-release" || ! -f "$BASE_DIR/rootfs.tmp/usr/sbin/update-ca-certificates" ]]; then
    log "debootstrap bookworm (minbase + ca-certificates) into $BASE_DIR (first run only, ~2-4 min)"
    rm -rf "$BASE_DIR/rootfs.tmp"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$BASE_DIR/rootfs.tmp" "$MIRROR" \
      >"$BASE_DIR/debootstrap.log" 2>&1 || { tail -20 "$BASE_DIR/debootstrap.log" >&2; die "debootstrap failed"; }
  fi
  # Trim what a runtime image does not need (distroless has none of it).
  rm -rf "$BASE_DIR/rootfs.tmp"/var/cache/apt/archives/*.deb "$BASE_DIR/rootfs.tmp"/var/lib/apt/lists/* \
    "$BASE_DIR/rootfs.tmp"/usr/share/doc/* "$BASE_DIR/rootfs.tmp"/usr/share/man/* "$BASE_DIR/rootfs.tmp"/usr/share/locale/*
  tar -C "$BASE_DIR/rootfs.tmp" -cf "$BASE_DIR/rootfs.tar.part" .
  mv "$BASE_DIR/rootfs.tar.part" "$BASE_DIR/rootfs.tar"
  rm -rf "$BASE_DIR/rootfs.tmp"
fi
if ! "${PODMAN[@]}" image exists "$BASE_IMAGE"; then
  log "importing $BASE_DIR/rootfs.tar as $BASE_IMAGE"
  "${PODMAN[@]}" import -q "$BASE_DIR/rootfs.tar" "$BASE_IMAGE" >/dev/null
fi

# ---------------------------------------------------------------- build the runtime stage

CTX="$(mktemp -d)"
QUEUE=""
ES="${ES_URL:-}"
cleanup() {
  local rc=$?
  if [[ $rc -ne 0 && $rc -ne 77 ]] && "${PODMAN[@]}" container exists "$NAME" 2>/dev/null; then
    echo "----- container log -----" >&2
    "${PODMAN[@]}" logs --tail 40 "$NAME" >&2 || true
  fi
  "${PODMAN[@]}" rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
  [[ -n "$QUEUE" && -n "$ES" ]] && "$PY" "$ROOT/scripts/localaws.py" delete-indices --es "$ES" --pattern "$QUEUE-*" >/dev/null 2>&1 || true
  [[ -n "$QUEUE" ]] && "$PY" "$ROOT/scripts/localaws.py" teardown --name "$QUEUE" >/dev/null 2>&1 || true
  rm -rf "$CTX"
  exit $rc
}
trap cleanup EXIT

cp "$BINARY" "$CTX/f4a-indexer"
runtime_containerfile "$ROOT/Dockerfile" "$CTX/Containerfile"
log "building the runtime stage ($(du -h "$BINARY" | cut -f1) binary from $BINARY)"
# --format docker keeps HEALTHCHECK (the OCI image format has no health check field).
"${PODMAN[@]}" build -q --format docker --network host -f "$CTX/Containerfile" -t "$TAG" "$CTX" >/dev/null

# The image carries what the Dockerfile says.
inspect() { "${PODMAN[@]}" image inspect --format "$1" "$TAG"; }
[[ "$(inspect '{{.Config.User}}')" == "65532:65532" ]] || die "user is $(inspect '{{.Config.User}}')"
[[ "$(inspect '{{json .Config.Entrypoint}}')" == '["/usr/local/bin/f4a-indexer"]' ]] || die "entrypoint $(inspect '{{json .Config.Entrypoint}}')"
inspect '{{json .Config.Healthcheck}}' | grep -q '"/usr/local/bin/f4a-indexer","healthcheck"' \
  || die "health check $(inspect '{{json .Config.Healthcheck}}')"
log "image size $("${PODMAN[@]}" image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.1f MB", $1/1e6}') (debug binary; base $BASE_IMAGE stand-in)"

# ---------------------------------------------------------------- run against the local stack

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HEALTH_PORT="$(free_port)"
curl -fsS --max-time 3 "$ES/_cluster/health" >/dev/null || die "search engine not running at $ES (scripts/stack.sh start)"

QUEUE="f4a-ctest-$$-$RANDOM"
QUEUE_URL="$("$PY" "$ROOT/scripts/localaws.py" setup --name "$QUEUE" --buffer-seconds 1 \
  | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["queue_url"])')"

log "running $TAG (queue $QUEUE, search engine $ES, indices $QUEUE-*, health port $HEALTH_PORT)"
"${PODMAN[@]}" run -d --name "$NAME" --network host --read-only \
  -e SQS_QUEUE_URL="$QUEUE_URL" -e AWS_ENDPOINT_URL -e AWS_REGION -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY \
  -e ES_URL="$ES" -e ES_INDEX="$QUEUE-%Y.%m.%d" -e DEAD_LETTER_INDEX="$QUEUE-dead-letter" -e HEALTH_ADDR="127.0.0.1:$HEALTH_PORT" -e SQS_WAIT_TIME_SECONDS=1 -e LOG_FORMAT=text \
  "$TAG" >/dev/null

"$PY" "$ROOT/scripts/localaws.py" send-firehose --stream "$QUEUE" --file "$ROOT/fixtures/te-process.ndjson.gz" >/dev/null
"$PY" "$ROOT/scripts/localaws.py" send-firehose --stream "$QUEUE" --file "$ROOT/fixtures/app-logs.ndjson.gz" >/dev/null
"$PY" "$ROOT/scripts/localaws.py" put-object --bucket "$QUEUE" --file "$ROOT/fixtures/cloudwatch-logs.json.gz" \
  --key "cloudwatch/$(date -u +%Y/%m/%d/%H)/cloudwatch-logs.json.gz" >/dev/null
EXPECTED="$("$PY" -c '
import json,sys; m = json.load(open(sys.argv[1]))["fixtures"]
print(sum(m[f]["indexed"] for f in ("te-process.ndjson.gz", "app-logs.ndjson.gz", "cloudwatch-logs.json.gz")))' "$ROOT/fixtures/manifest.json")"

# A real engine shows documents only after a refresh.
count() { curl -fsS --max-time 3 -X POST "$ES/$QUEUE-2*/_refresh" >/dev/null 2>&1 || true
  curl -fsS --max-time 3 "$ES/$QUEUE-2*/_count" 2>/dev/null | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["count"])' 2>/dev/null || echo 0; }
deadline=$((SECONDS + ${CONTAINER_TEST_TIMEOUT:-180}))
until [[ "$(count)" -ge "$EXPECTED" ]]; do
  "${PODMAN[@]}" container inspect --format '{{.State.Running}}' "$NAME" | grep -q true || die "container exited"
  (( SECONDS < deadline )) || die "indexed $(count) of $EXPECTED documents in time"
  sleep 1
done
[[ "$(count)" -eq "$EXPECTED" ]] || die "indexed $(count) documents, expected $EXPECTED"
log "indexed $EXPECTED documents"

# The image's HEALTHCHECK, as the engine runs it, and the subcommand directly.
"${PODMAN[@]}" healthcheck run "$NAME" || die "podman healthcheck run: unhealthy"
"${PODMAN[@]}" exec "$NAME" /usr/local/bin/f4a-indexer healthcheck || die "f4a-indexer healthcheck failed"
curl -fsS --max-time 3 "http://127.0.0.1:$HEALTH_PORT/readyz" >/dev/null || die "/readyz not 200"
log "health check passed"

"${PODMAN[@]}" stop -t 35 "$NAME" >/dev/null
code="$("${PODMAN[@]}" container inspect --format '{{.State.ExitCode}}' "$NAME")"
[[ "$code" == 0 ]] || die "exit code $code after SIGTERM"
log "PASS: built, indexed $EXPECTED documents, healthy, stopped cleanly"
