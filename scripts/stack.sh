#!/usr/bin/env bash
# Local dev/test stack for f4a-indexer, without Docker:
#   - LocalStack (S3, SQS, Firehose, SNS, IAM, STS) run in "host mode" from a venv
#   - osmem-server, an in-memory OpenSearch-compatible server (static binary from PyPI)
#
# Usage: scripts/stack.sh install|start|stop|status|env
#
# Everything lives in ${F4A_CACHE:-$HOME/.cache/f4a-indexer}: the venv, logs, pid
# files and LocalStack's volume dir. All subcommands are idempotent.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${F4A_CACHE:-$HOME/.cache/f4a-indexer}"
VENV="$CACHE/venv"
LOGS="$CACHE/logs"
RUN="$CACHE/run"
LS_VOLUME="$CACHE/localstack-volume"
CONSTRAINTS="$ROOT/scripts/localstack-constraints.txt"

PYTHON="${PYTHON:-python3.11}"
LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
OSMEM_PORT="${OSMEM_PORT:-9200}"
START_TIMEOUT="${STACK_START_TIMEOUT:-120}"

# Pins. Bump STACK_VERSION whenever the install steps change so the stamp is invalidated.
STACK_VERSION=2
OSMEM_VERSION=0.1.6
# LocalStack 4.9.2 only runs in host mode (no Docker) with these extra upper bounds;
# the full pin set is in $CONSTRAINTS.
PIP_PACKAGES=(
  "localstack-core[runtime]==4.9.2"
  "cbor2<5.7" "cryptography<44" "pyOpenSSL<24.3" "service_identity<25" "joserfc<1.1"
  "osmem-server==$OSMEM_VERSION"
  # Deployment-file tests (tests/deploy, `make test-deploy`): pytest, cfn-lint for
  # deploy/cloudformation.yaml, the AWS CLI for the LocalStack init script.
  "pytest==9.2.0" "cfn-lint==1.58.0" "awscli==1.42.40"
)

LS_URL="http://127.0.0.1:$LOCALSTACK_PORT"
OS_URL="http://127.0.0.1:$OSMEM_PORT"
STAMP="$VENV/.f4a-stack-stamp"
OSMEM_BIN_FILE="$VENV/.f4a-osmem-bin"

log() { echo "[stack] $*" >&2; }
die() { echo "[stack] ERROR: $*" >&2; exit 1; }

# Hash of everything that determines the venv contents.
stamp_value() {
  {
    echo "stack=$STACK_VERSION osmem=$OSMEM_VERSION"
    printf '%s\n' "${PIP_PACKAGES[@]}"
    cat "$CONSTRAINTS"
  } | sha256sum | cut -d' ' -f1
}

is_installed() {
  [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_value)" && -x "$VENV/bin/python" ]] \
    && [[ -f "$OSMEM_BIN_FILE" && -x "$(cat "$OSMEM_BIN_FILE")" ]]
}

# GET $1 and print the body; fails unless HTTP 2xx. curl if present, else
# Python (a fresh box may lack curl).
http_get() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 3 "$1" 2>/dev/null
  else
    python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())' "$1" 2>/dev/null
  fi
}
http_ok() { http_get "$1" >/dev/null; }

ls_healthy() { http_ok "$LS_URL/_localstack/health"; }
os_healthy() { http_ok "$OS_URL/_cluster/health"; }

# pid file -> live pid (or fail). The command line must still match, so a
# stale pid file whose pid was reused never makes us signal a stranger.
live_pid() {
  local f="$RUN/$1.pid" pid pattern
  case "$1" in localstack) pattern="localstack.runtime.main" ;; *) pattern="osmem-server" ;; esac
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null \
    && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$pattern" && echo "$pid"
}

cmd_install() {
  if is_installed; then
    log "already installed ($VENV)"
    return 0
  fi
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=/path/to/python3.11)"
  [[ -f "$CONSTRAINTS" ]] || die "missing $CONSTRAINTS"
  mkdir -p "$CACHE" "$LOGS" "$RUN"
  if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    log "creating venv $VENV with $PYTHON"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "venv creation failed (Debian: apt-get install python3.11-venv)"
  fi
  log "installing LocalStack + osmem-server $OSMEM_VERSION (pinned by $CONSTRAINTS)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$CONSTRAINTS" "${PIP_PACKAGES[@]}"
  # The wheel ships the Go binary inside the package dir (osmem_server/bin/osmem-server).
  local bin
  bin="$("$VENV/bin/python" -c 'import osmem_server; print(osmem_server.resolve_binary())')"
  [[ -f "$bin" ]] || die "osmem-server binary not found at $bin"
  chmod +x "$bin"
  "$bin" -version >/dev/null || die "osmem-server binary does not run: $bin"
  "$VENV/bin/python" -c 'import localstack.runtime.main, boto3' || die "LocalStack import check failed"
  echo "$bin" >"$OSMEM_BIN_FILE"
  stamp_value >"$STAMP"
  log "installed: localstack-core 4.9.2, osmem-server $("$bin" -version 2>&1 | head -1)"
}

# Start "$1" (name) in its own session in the background, logging to $LOGS/$1.log.
spawn() {
  local name="$1"; shift
  mkdir -p "$LOGS" "$RUN"
  # setsid: own process group so stop can kill the whole tree, and so it survives
  # the calling shell (make, CI step) exiting.
  setsid nohup "$@" </dev/null >>"$LOGS/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

# wait_for NAME CHECK_FN: poll until healthy, or fail with the log tail.
wait_for() {
  local name="$1" check="$2" deadline=$((SECONDS + START_TIMEOUT))
  until "$check"; do
    if ! live_pid "$name" >/dev/null; then
      echo "----- tail of $LOGS/$name.log -----" >&2
      tail -n 40 "$LOGS/$name.log" >&2 || true
      die "$name exited during startup"
    fi
    if (( SECONDS >= deadline )); then
      echo "----- tail of $LOGS/$name.log -----" >&2
      tail -n 40 "$LOGS/$name.log" >&2 || true
      die "$name not healthy after ${START_TIMEOUT}s"
    fi
    sleep 1
  done
}

start_localstack() {
  if ls_healthy; then
    log "LocalStack already running at $LS_URL"
    return 0
  fi
  if ! live_pid localstack >/dev/null; then
    mkdir -p "$LS_VOLUME"
    log "starting LocalStack on $LS_URL (log: $LOGS/localstack.log)"
    # SKIP_SSL_CERT_DOWNLOAD / DISABLE_EVENTS: no internet here, avoid slow
    # download attempts and analytics. DNS_ADDRESS=0: we address LocalStack by
    # IP (a "Unable to start DNS" warning in the log is harmless).
    # LOCALSTACK_HOST + SQS_ENDPOINT_STRATEGY=off: queue URLs come back as
    # http://127.0.0.1:4566/000000000000/NAME instead of
    # sqs.us-east-1.localhost.localstack.cloud, which needs public DNS.
    # GATEWAY_SERVER=hypercorn: LocalStack's default (twisted) ignores the host
    # part of GATEWAY_LISTEN and binds 0.0.0.0; hypercorn binds 127.0.0.1 only.
    # (Override with LOCALSTACK_GATEWAY_SERVER=twisted if hypercorn misbehaves.)
    GATEWAY_SERVER="${LOCALSTACK_GATEWAY_SERVER:-hypercorn}" \
    GATEWAY_LISTEN="127.0.0.1:$LOCALSTACK_PORT" \
    LOCALSTACK_HOST="127.0.0.1:$LOCALSTACK_PORT" \
    SERVICES="s3,sqs,firehose,sns,iam,sts" \
    LOCALSTACK_VOLUME_DIR="$LS_VOLUME" \
    SQS_ENDPOINT_STRATEGY=off SQS_DISABLE_CLOUDWATCH_METRICS=1 \
    SKIP_SSL_CERT_DOWNLOAD=1 DISABLE_EVENTS=1 DNS_ADDRESS=0 \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 \
      spawn localstack "$VENV/bin/python" -m localstack.runtime.main
  else
    log "LocalStack process exists (pid $(live_pid localstack)), waiting for health"
  fi
  wait_for localstack ls_healthy
  # Services load lazily: the first call to each takes seconds. Pay that here,
  # not in the first test (which would then hit its own timeouts).
  log "warming up S3/SQS/Firehose/IAM"
  AWS_ENDPOINT_URL="$LS_URL" "$VENV/bin/python" - <<'PY'
import os, boto3
kw = dict(endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name="us-east-1",
          aws_access_key_id="test", aws_secret_access_key="test")
boto3.client("s3", **kw).list_buckets()
boto3.client("sqs", **kw).list_queues()
boto3.client("firehose", **kw).list_delivery_streams()
boto3.client("sts", **kw).get_caller_identity()
boto3.client("iam", **kw).list_roles()
PY
  log "LocalStack ready at $LS_URL"
}

start_osmem() {
  if os_healthy; then
    log "osmem already running at $OS_URL"
    return 0
  fi
  if ! live_pid osmem >/dev/null; then
    log "starting osmem-server on $OS_URL (log: $LOGS/osmem.log)"
    # -no-stdin-watch: by default osmem exits when its stdin closes.
    spawn osmem "$(cat "$OSMEM_BIN_FILE")" -addr "127.0.0.1:$OSMEM_PORT" -no-stdin-watch
  fi
  wait_for osmem os_healthy
  log "osmem ready at $OS_URL"
}

cmd_start() {
  cmd_install
  start_osmem
  start_localstack
}

stop_one() {
  local name="$1" pid
  if pid="$(live_pid "$name")"; then
    log "stopping $name (pid $pid)"
    # Negative pid = the whole process group created by setsid.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name did not stop on TERM, killing"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  else
    log "$name not started by this script (no live pid file)"
  fi
  rm -f "$RUN/$name.pid"
}

cmd_stop() {
  stop_one localstack
  stop_one osmem
}

cmd_status() {
  local rc=0 pid
  if ls_healthy; then
    pid="$(live_pid localstack || echo external)"
    echo "localstack: up   $LS_URL (pid $pid)"
    http_get "$LS_URL/_localstack/health" | python3 -c \
      'import json,sys; d=json.load(sys.stdin); print("  version", d.get("version"), "services", {k:v for k,v in d.get("services",{}).items() if v!="disabled"})' || true
  else
    echo "localstack: down $LS_URL"; rc=1
  fi
  if os_healthy; then
    pid="$(live_pid osmem || echo external)"
    echo "osmem:      up   $OS_URL (pid $pid)"
  else
    echo "osmem:      down $OS_URL"; rc=1
  fi
  if is_installed; then echo "installed:  $VENV"; else echo "installed:  no (run: scripts/stack.sh install)"; rc=1; fi
  return $rc
}

cmd_env() {
  is_installed || die "stack not installed; run: scripts/stack.sh install"
  cat <<ENV
export AWS_ENDPOINT_URL=$LS_URL
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export ES_URL=$OS_URL
export OSMEM_BIN=$(cat "$OSMEM_BIN_FILE")
export F4A_VENV=$VENV
ENV
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
