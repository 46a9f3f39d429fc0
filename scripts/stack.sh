#!/usr/bin/env bash
# Local dev/test stack for f4a-indexer, without Docker:
#   - LocalStack (S3, SQS, Firehose, SNS, IAM, STS) run in "host mode" from a venv
#   - a search engine on 127.0.0.1:$F4A_ES_PORT (default 9200), chosen by F4A_ENGINE:
#       opensearch   (default) a real OpenSearch 2.19 node on JDK 17, embedded in one JVM by
#                    scripts/opensearch/ (jars from Maven Central, see its pom.xml)
#       opensearch3  a real OpenSearch 3.x node on a JDK 21+ (the Temurin 25 JDK here)
#       elasticsearch  a real Elasticsearch 9.x node on a JDK 21+, embedded in one JVM by
#                    scripts/elasticsearch/ (Elastic's jars from Maven Central, see its README.md)
#       elasticsearch8 a real Elasticsearch 8.19 node on JDK 17
#       osmem        osmem-server, an in-memory double of the REST API (no Java needed)
#
# Usage: scripts/stack.sh install|start|stop|status|env
#
# Everything lives in ${F4A_CACHE:-$HOME/.cache/f4a-indexer}: the venv, the Maven repository and
# the built launcher (opensearch/<version>/, elasticsearch/<version>/), the shared node's home (engines/<engine>/), logs,
# pid files and LocalStack's volume dir. All subcommands are idempotent; `start` reuses a
# running stack, and replaces a running search engine of another kind that it started itself.
#
# Ports and versions: LOCALSTACK_PORT (4566), F4A_ES_PORT (9200), F4A_OPENSEARCH_VERSION
# (2.19.6), F4A_OPENSEARCH3_VERSION (3.9.0), F4A_ELASTICSEARCH_VERSION (9.5.3),
# F4A_ELASTICSEARCH8_VERSION (8.19.21), F4A_ES_HEAP (512m), F4A_JAVA3_HOME (a JDK 21+).
# The shared node starts with an empty data path unless F4A_KEEP_DATA=1.
#
# `env` prints the variables for tests, demo and bench: the AWS ones, ES_URL, and F4A_* ones
# (never a worker prefix such as ES_ or SQS_: the worker refuses unknown variables of its own).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${F4A_CACHE:-$HOME/.cache/f4a-indexer}"
VENV="$CACHE/venv"
LOGS="$CACHE/logs"
RUN="$CACHE/run"
LS_VOLUME="$CACHE/localstack-volume"
M2="$CACHE/m2"
CONSTRAINTS="$ROOT/scripts/localstack-constraints.txt"
LAUNCHER_DIR="$ROOT/scripts/opensearch"
LAUNCHER_SRC="$LAUNCHER_DIR/src/main/java/f4a/OpenSearchLauncher.java"

PYTHON="${PYTHON:-python3.11}"
LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
ES_PORT="${F4A_ES_PORT:-9200}"
START_TIMEOUT="${STACK_START_TIMEOUT:-180}"
ENGINE="${F4A_ENGINE:-opensearch}"
ES_HEAP="${F4A_ES_HEAP:-512m}"

# Pins. Bump STACK_VERSION whenever the venv install steps change so the stamp is invalidated.
STACK_VERSION=2
OSMEM_VERSION=0.1.6
OPENSEARCH_VERSION="${F4A_OPENSEARCH_VERSION:-2.19.6}"
OPENSEARCH3_VERSION="${F4A_OPENSEARCH3_VERSION:-3.9.0}"
ELASTICSEARCH_VERSION="${F4A_ELASTICSEARCH_VERSION:-9.5.3}"
ELASTICSEARCH8_VERSION="${F4A_ELASTICSEARCH8_VERSION:-8.19.21}"
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

# DynamoDB for the fleet tests (tests/fleet.rs): moto's server, in a venv of its own because
# LocalStack's venv holds moto-ext, which installs the same `moto` package (one would overwrite
# the other). Its own stamp: changing the pin reinstalls only this venv.
MOTO_VERSION=5.2.1
MOTO_VENV="$CACHE/moto-venv"
MOTO_STAMP="$MOTO_VENV/.f4a-moto-stamp"

LS_URL="http://127.0.0.1:$LOCALSTACK_PORT"
ES_URL_LOCAL="http://127.0.0.1:$ES_PORT"
STAMP="$VENV/.f4a-stack-stamp"
OSMEM_BIN_FILE="$VENV/.f4a-osmem-bin"

log() { echo "[stack] $*" >&2; }
die() { echo "[stack] ERROR: $*" >&2; exit 1; }

# KIND: the family of the engine (which launcher, which identity); OS_VERSION its version.
case "$ENGINE" in
  opensearch) KIND=opensearch; OS_VERSION="$OPENSEARCH_VERSION"; JAVA_MIN=17; JAVA_MAX=21 ;;
  opensearch3) KIND=opensearch; OS_VERSION="$OPENSEARCH3_VERSION"; JAVA_MIN=21; JAVA_MAX=99 ;;
  elasticsearch) KIND=elasticsearch; OS_VERSION="$ELASTICSEARCH_VERSION"; JAVA_MIN=21; JAVA_MAX=99 ;;
  elasticsearch8) KIND=elasticsearch; OS_VERSION="$ELASTICSEARCH8_VERSION"; JAVA_MIN=17; JAVA_MAX=21 ;;
  osmem) KIND=osmem; OS_VERSION="" ;;
  *) die "F4A_ENGINE=$ENGINE: accepted values are opensearch (default), opensearch3, elasticsearch, elasticsearch8, osmem" ;;
esac
# The built launcher of one engine version: classes, classpath, java path, argfile, stamp
# (scripts/elasticsearch/install.sh lays out $CACHE/elasticsearch/<version>/ the same way).
OS_DIR="$CACHE/$KIND/${OS_VERSION:-none}"
# The shared node's home (config, logs, data) for this engine.
NODE_HOME="$CACHE/engines/$ENGINE"

# Hash of everything that determines the venv contents.
stamp_value() {
  {
    echo "stack=$STACK_VERSION osmem=$OSMEM_VERSION"
    printf '%s\n' "${PIP_PACKAGES[@]}"
    cat "$CONSTRAINTS"
  } | sha256sum | cut -d' ' -f1
}

venv_installed() {
  [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(stamp_value)" && -x "$VENV/bin/python" ]] \
    && [[ -f "$OSMEM_BIN_FILE" && -x "$(cat "$OSMEM_BIN_FILE")" ]]
}

# Hash of what determines a built launcher (the JDK is part of it: a new JDK rebuilds).
engine_stamp_value() {
  { echo "version=$OS_VERSION java=$1 heapless-args=2"; cat "$LAUNCHER_DIR/pom.xml" "$LAUNCHER_SRC"; } \
    | sha256sum | cut -d' ' -f1
}

engine_installed() {
  [[ "$ENGINE" == osmem ]] && return 0
  if [[ "$KIND" == elasticsearch ]]; then
    # install.sh compares its own stamp when it runs (every `start`); here: built at all.
    [[ -f "$OS_DIR/java" && -x "$(cat "$OS_DIR/java")" && -f "$OS_DIR/java.args" && -f "$OS_DIR/stamp" ]]
    return
  fi
  [[ -f "$OS_DIR/java" && -x "$(cat "$OS_DIR/java")" && -f "$OS_DIR/java.args" && -f "$OS_DIR/stamp" ]] \
    && [[ "$(cat "$OS_DIR/stamp")" == "$(engine_stamp_value "$(cat "$OS_DIR/java")")" ]]
}

is_installed() { venv_installed && engine_installed; }

moto_installed() {
  [[ -f "$MOTO_STAMP" && "$(cat "$MOTO_STAMP")" == "moto[server]==$MOTO_VERSION" && -x "$MOTO_VENV/bin/moto_server" ]]
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
# Yellow: every primary shard is up (after a restart with F4A_KEEP_DATA=1 the node answers
# before its shards are recovered).
es_healthy() { http_ok "$ES_URL_LOCAL/_cluster/health?wait_for_status=yellow&timeout=1s"; }

# What answers on the search port: "opensearch 2.19.6", "osmem", or nothing (fails).
es_identity() {
  local body
  body="$(http_get "$ES_URL_LOCAL/")" || return 1
  python3 -c '
import json, sys
d = json.loads(sys.argv[1])
v = d.get("version", {})
if "osmem" in json.dumps(d).lower():
    print("osmem")
else:
    print(v.get("distribution", "elasticsearch"), v.get("number", "?"))' "$body"
}

expected_identity() {
  if [[ "$ENGINE" == osmem ]]; then echo osmem; else echo "$KIND $OS_VERSION"; fi
}

# pid file -> live pid (or fail). The command line must still match, so a
# stale pid file whose pid was reused never makes us signal a stranger.
live_pid() {
  local f="$RUN/$1.pid" pid pattern
  case "$1" in
    localstack) pattern="localstack.runtime.main" ;;
    *) pattern="f4a.OpenSearchLauncher|f4a.ElasticsearchLauncher|/java.args|osmem-server" ;;
  esac
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null \
    && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -Eq "$pattern" && echo "$pid"
}

# apt-get install, once per run, only when something is missing (CI and fresh machines).
apt_updated=0
apt_install() {
  command -v apt-get >/dev/null || die "$* missing and no apt-get to install it"
  [[ $EUID -eq 0 ]] || die "$* missing; install it (apt-get install $*) or run as root"
  if ((apt_updated == 0)); then apt-get update -q >/dev/null; apt_updated=1; fi
  log "installing Debian packages: $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed"
}

# Major version of the java binary $1 (17, 21, 25, ...), or fail.
java_major() {
  "$1" -XshowSettings:properties -version 2>&1 | awk -F' = ' '/java.specification.version/ {print $2; exit}'
}

# A JDK (java + javac) with JAVA_MIN <= major <= JAVA_MAX; prints its java path.
find_jdk() {
  local candidates=() c m
  ((JAVA_MIN >= 21)) && [[ -n "${F4A_JAVA3_HOME:-}" ]] && candidates+=("$F4A_JAVA3_HOME/bin/java")
  [[ -n "${JAVA_HOME:-}" ]] && candidates+=("$JAVA_HOME/bin/java")
  candidates+=(/usr/lib/jvm/java-17-openjdk-amd64/bin/java /usr/lib/jvm/java-17-openjdk-arm64/bin/java)
  candidates+=(/usr/lib/jvm/temurin-25-jdk-amd64/bin/java /usr/lib/jvm/*/bin/java)
  command -v java >/dev/null && candidates+=("$(readlink -f "$(command -v java)")")
  for c in "${candidates[@]}"; do
    [[ -x "$c" && -x "$(dirname "$c")/javac" ]] || continue
    m="$(java_major "$c")" || continue
    [[ "$m" =~ ^[0-9]+$ ]] || continue
    if ((m >= JAVA_MIN && m <= JAVA_MAX)); then echo "$c"; return 0; fi
  done
  return 1
}

install_venv() {
  if venv_installed; then
    log "venv already installed ($VENV)"
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

install_moto() {
  if moto_installed; then
    log "moto already installed ($MOTO_VENV)"
    return 0
  fi
  command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON=/path/to/python3.11)"
  rm -rf "$MOTO_VENV"
  "$PYTHON" -m venv "$MOTO_VENV" || die "venv creation failed (Debian: apt-get install python3.11-venv)"
  log "installing moto[server]==$MOTO_VERSION (DynamoDB for the fleet tests)"
  "$MOTO_VENV/bin/python" -m pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  "$MOTO_VENV/bin/moto_server" --help >/dev/null || die "moto_server does not run"
  echo "moto[server]==$MOTO_VERSION" >"$MOTO_STAMP"
}

# Resolve the node's jars into $M2 (Maven Central the first time, offline after), compile the
# launcher against them, write the argfile that `java` runs it with.
install_engine() {
  [[ "$ENGINE" == osmem ]] && return 0
  if [[ "$KIND" == elasticsearch ]]; then install_elasticsearch; return; fi
  if engine_installed; then
    log "OpenSearch $OS_VERSION launcher already built ($OS_DIR)"
    return 0
  fi
  local java jhome release t0=$SECONDS
  if ! java="$(find_jdk)"; then
    if [[ "$ENGINE" == opensearch3 ]]; then
      die "OpenSearch $OS_VERSION needs a JDK $JAVA_MIN or newer (java + javac); none found. Set F4A_JAVA3_HOME (e.g. /usr/lib/jvm/temurin-25-jdk-amd64)"
    fi
    apt_install openjdk-17-jdk-headless
    java="$(find_jdk)" || die "no JDK $JAVA_MIN..$JAVA_MAX found after installing openjdk-17-jdk-headless"
  fi
  jhome="$(dirname "$(dirname "$java")")"
  command -v mvn >/dev/null || apt_install maven
  release="$(java_major "$java")"
  log "building the OpenSearch $OS_VERSION launcher with $jhome (JDK $release)"
  mkdir -p "$OS_DIR" "$M2"
  rm -rf "$OS_DIR/classes" "$OS_DIR/stamp"
  # -o when everything is already in $M2 keeps a rebuild offline; the first run downloads.
  local mvn_args=(-B -q -f "$LAUNCHER_DIR/pom.xml" "-Dmaven.repo.local=$M2" "-Dopensearch.version=$OS_VERSION"
    dependency:build-classpath "-Dmdep.outputFile=$OS_DIR/classpath.txt")
  if ! JAVA_HOME="$jhome" mvn -o "${mvn_args[@]}" >"$OS_DIR/mvn.log" 2>&1; then
    log "resolving OpenSearch $OS_VERSION from Maven Central into $M2 (first time only)"
    JAVA_HOME="$jhome" mvn "${mvn_args[@]}" >"$OS_DIR/mvn.log" 2>&1 \
      || { tail -30 "$OS_DIR/mvn.log" >&2; die "Maven could not resolve OpenSearch $OS_VERSION (log: $OS_DIR/mvn.log)"; }
  fi
  # The classes are compiled for this version (its Node constructor, its class files).
  "$jhome/bin/javac" --release "$release" -nowarn -Xlint:none -encoding UTF-8 \
    -cp "$(cat "$OS_DIR/classpath.txt")" -d "$OS_DIR/classes" "$LAUNCHER_SRC" 2>"$OS_DIR/javac.log" \
    || { cat "$OS_DIR/javac.log" >&2; die "compiling $LAUNCHER_SRC failed"; }
  # java @argfile: JVM options and the classpath; callers add the heap before it and the
  # launcher's own arguments after it. The -D options are the distribution's jvm.options ones
  # that matter for an embedded node.
  {
    ((release >= 21)) && echo "--enable-native-access=ALL-UNNAMED"
    echo "-XX:+UseG1GC"
    echo "-XX:-OmitStackTraceInFastThrow"
    echo "-Dfile.encoding=UTF-8"
    echo "-Djava.awt.headless=true"
    echo "-Djna.nosys=true"
    echo "-Dio.netty.noUnsafe=true"
    echo "-Dio.netty.noKeySetOptimization=true"
    echo "-Dio.netty.recycler.maxCapacityPerThread=0"
    echo "-Dlog4j.shutdownHookEnabled=false"
    echo "-Dlog4j2.disable.jmx=true"
    echo "-cp"
    echo "\"$OS_DIR/classes:$(cat "$OS_DIR/classpath.txt")\""
    echo "f4a.OpenSearchLauncher"
  } >"$OS_DIR/java.args"
  echo "$java" >"$OS_DIR/java"
  engine_stamp_value "$java" >"$OS_DIR/stamp"
  log "OpenSearch $OS_VERSION launcher built in $((SECONDS - t0)) s ($(tr ':' '\n' <"$OS_DIR/classpath.txt" | wc -l) jars in $M2)"
}

# Elasticsearch: scripts/elasticsearch/install.sh builds the node (idempotent: a stamp of its
# inputs). It is given the JDK chosen here (JDK 17 for 8.x, 21+ for 9.x) as JAVA_HOME.
install_elasticsearch() {
  local java
  if ! java="$(find_jdk)"; then
    ((JAVA_MIN >= 21)) \
      && die "Elasticsearch $OS_VERSION needs a JDK $JAVA_MIN or newer (java + javac); none found. Set F4A_JAVA3_HOME (e.g. /usr/lib/jvm/temurin-25-jdk-amd64)"
    apt_install openjdk-17-jdk-headless
    java="$(find_jdk)" || die "no JDK $JAVA_MIN..$JAVA_MAX found after installing openjdk-17-jdk-headless"
  fi
  command -v mvn >/dev/null || apt_install maven
  local pkgs=()
  command -v unzip >/dev/null || pkgs+=(unzip)
  command -v zip >/dev/null || pkgs+=(zip)
  ((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"
  mkdir -p "$CACHE"
  F4A_CACHE="$CACHE" F4A_JAVA3_HOME= JAVA_HOME="$(dirname "$(dirname "$java")")" \
    "$ROOT/scripts/elasticsearch/install.sh" "$OS_VERSION" >/dev/null \
    || die "building the Elasticsearch $OS_VERSION node failed (scripts/elasticsearch/install.sh)"
  [[ "$(cat "$OS_DIR/java")" == "$java" ]] || die "install.sh built $OS_DIR with $(cat "$OS_DIR/java"), not $java"
}

cmd_install() {
  install_venv
  install_engine
  install_moto
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

start_search() {
  local want have
  want="$(expected_identity)"
  if es_healthy; then
    have="$(es_identity || echo unknown)"
    if [[ "$have" == "$want" ]]; then
      log "$have already running at $ES_URL_LOCAL"
      return 0
    fi
    live_pid search >/dev/null \
      || die "$ES_URL_LOCAL answers as '$have', not '$want', and was not started by this script (stop it, or set F4A_ES_PORT)"
    log "$have is running at $ES_URL_LOCAL; replacing it with $want"
    stop_one search
  fi
  if ! live_pid search >/dev/null; then
    : >"$LOGS/search.log"
    if [[ "$ENGINE" == osmem ]]; then
      log "starting osmem-server on $ES_URL_LOCAL (log: $LOGS/search.log)"
      # -no-stdin-watch: by default osmem exits when its stdin closes.
      spawn search "$(cat "$OSMEM_BIN_FILE")" -addr "127.0.0.1:$ES_PORT" -no-stdin-watch
    elif [[ "$KIND" == elasticsearch ]]; then
      if [[ "${F4A_KEEP_DATA:-0}" != 1 ]]; then rm -rf "$NODE_HOME/data"; fi
      mkdir -p "$NODE_HOME"
      log "starting Elasticsearch $OS_VERSION on $ES_URL_LOCAL, heap $ES_HEAP (home $NODE_HOME, log: $LOGS/search.log)"
      spawn search "$(cat "$OS_DIR/java")" "-Xms$ES_HEAP" "-Xmx$ES_HEAP" "@$OS_DIR/java.args" \
        --home "$NODE_HOME" --data "$NODE_HOME/data" --port "$ES_PORT"
    else
      if [[ "${F4A_KEEP_DATA:-0}" != 1 ]]; then rm -rf "$NODE_HOME/data"; fi
      mkdir -p "$NODE_HOME"
      log "starting OpenSearch $OS_VERSION on $ES_URL_LOCAL, heap $ES_HEAP (home $NODE_HOME, log: $LOGS/search.log)"
      spawn search "$(cat "$OS_DIR/java")" "-Xms$ES_HEAP" "-Xmx$ES_HEAP" "@$OS_DIR/java.args" \
        --home "$NODE_HOME" --port "$ES_PORT"
    fi
    echo "$ENGINE" >"$RUN/search.engine"
  fi
  local t0=$SECONDS
  wait_for search es_healthy
  have="$(es_identity || echo unknown)"
  [[ "$have" == "$want" ]] || die "$ES_URL_LOCAL answers as '$have', expected '$want'"
  log "$have ready at $ES_URL_LOCAL (up in $((SECONDS - t0)) s)"
}

cmd_start() {
  cmd_install
  start_search
  start_localstack
}

stop_one() {
  local name="$1" pid
  if pid="$(live_pid "$name")"; then
    log "stopping $name (pid $pid)"
    # Negative pid = the whole process group created by setsid.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
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
  stop_one search
  rm -f "$RUN/search.engine"
  # osmem started by an older version of this script.
  if [[ -f "$RUN/osmem.pid" ]]; then stop_one osmem; fi
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
  if es_healthy; then
    pid="$(live_pid search || echo external)"
    echo "search:     up   $ES_URL_LOCAL $(es_identity || echo '?') (pid $pid)"
    [[ "$(es_identity || true)" == "$(expected_identity)" ]] \
      || { echo "  F4A_ENGINE=$ENGINE expects $(expected_identity)"; rc=1; }
  else
    echo "search:     down $ES_URL_LOCAL (F4A_ENGINE=$ENGINE)"; rc=1
  fi
  if is_installed; then echo "installed:  $VENV${OS_VERSION:+, $KIND $OS_VERSION in $OS_DIR}"; else echo "installed:  no (run: scripts/stack.sh install)"; rc=1; fi
  return $rc
}

cmd_env() {
  is_installed || die "stack not installed for F4A_ENGINE=$ENGINE; run: scripts/stack.sh install"
  cat <<ENV
export AWS_ENDPOINT_URL=$LS_URL
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export ES_URL=$ES_URL_LOCAL
export F4A_ENGINE=$ENGINE
export F4A_OSMEM_BIN=$(cat "$OSMEM_BIN_FILE")
export F4A_VENV=$VENV
ENV
  # Tests start private moto servers with: $F4A_MOTO_SERVER -H 127.0.0.1 -p PORT
  if moto_installed; then echo "export F4A_MOTO_SERVER=$MOTO_VENV/bin/moto_server"; fi
  if [[ "$KIND" == elasticsearch ]]; then
    # Tests start private nodes with: $F4A_ELASTICSEARCH_JAVA -Xms.. -Xmx.. @$F4A_ELASTICSEARCH_ARGS --home H --data D ...
    cat <<ENV
export F4A_ELASTICSEARCH_JAVA=$(cat "$OS_DIR/java")
export F4A_ELASTICSEARCH_ARGS=$OS_DIR/java.args
export F4A_ES_HEAP=$ES_HEAP
ENV
  elif [[ "$ENGINE" != osmem ]]; then
    # Tests start private nodes with: $F4A_OPENSEARCH_JAVA -Xms.. -Xmx.. @$F4A_OPENSEARCH_ARGS --home DIR ...
    cat <<ENV
export F4A_OPENSEARCH_VERSION=$OS_VERSION
export F4A_OPENSEARCH_JAVA=$(cat "$OS_DIR/java")
export F4A_OPENSEARCH_ARGS=$OS_DIR/java.args
export F4A_ES_HEAP=$ES_HEAP
ENV
  fi
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac
