#!/usr/bin/env bash
# End-to-end demo against the local stack:
#   Firehose (DirectPut) -> S3 bucket -> ObjectCreated event -> SQS -> f4a-indexer -> search engine
# (a real OpenSearch node by default; F4A_ENGINE=opensearch3|elasticsearch|elasticsearch8|osmem, see scripts/stack.sh), then
# counts, a sample document and real searches (aggregations, a sorted query, full text).
# The first run downloads LocalStack and OpenSearch's jars (see README, Quick start).
#
# Usage: scripts/demo.sh [--no-worker]
#   --no-worker   only set up AWS resources and deliver the fixtures (no cargo build/run)
# Env: DEMO_NAME (default f4a-demo), DEMO_KEEP_INDICES=1 to not wipe f4a-* indices first.
# Re-runnable: setup is idempotent, stale queue messages are purged first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
NAME="${DEMO_NAME:-f4a-demo}"
RUN_WORKER=1
[[ "${1:-}" == "--no-worker" ]] && RUN_WORKER=0

section() { printf '\n==== %s ====\n' "$*"; }

section "local stack"
scripts/stack.sh start
eval "$(scripts/stack.sh env)"
PY="$F4A_VENV/bin/python"
AWS() { "$PY" scripts/localaws.py "$@"; }

section "AWS resources ($NAME)"
# Small buffering hints, as a real deployment for low latency would use.
# (LocalStack ignores them and writes one object per PutRecordBatch call.)
SETUP_JSON="$(AWS setup --name "$NAME" --buffer-seconds 5 --buffer-mb 1)"
echo "$SETUP_JSON"
QUEUE_URL="$("$PY" -c 'import json,sys; print(json.load(sys.stdin)["queue_url"])' <<<"$SETUP_JSON")"
# Events left over from an earlier run would be indexed twice.
AWS purge --name "$NAME"

section "deliver fixtures"
SINCE=$(( $(date +%s) - 1 ))
AWS send-firehose --stream "$NAME" --file fixtures/te-process.ndjson.gz
AWS send-firehose --stream "$NAME" --file fixtures/app-logs.ndjson.gz
EXPECTED="$("$PY" -c '
import json; m = json.load(open("fixtures/manifest.json"))["fixtures"]
print(sum(m[f]["indexed"] for f in ("te-process.ndjson.gz", "app-logs.ndjson.gz", "cloudwatch-logs.json.gz")))')"

section "objects in s3://$NAME"
AWS wait-objects --bucket "$NAME" --since "$SINCE" --expect-records 1300 --timeout 60
# CloudWatch Logs subscriptions reach S3 as concatenated gzip members; LocalStack's
# Firehose cannot produce that (it never compresses), so upload the fixture as is.
AWS put-object --bucket "$NAME" --file fixtures/cloudwatch-logs.json.gz \
  --key "cloudwatch/$(date -u +%Y/%m/%d/%H)/cloudwatch-logs-$(date +%s).json.gz"
sleep 1  # S3 -> SQS notifications are asynchronous
AWS queue-stats --name "$NAME"

if [[ "$RUN_WORKER" == 0 ]]; then
  echo
  echo "--no-worker: stopping here. Queue: $QUEUE_URL"
  exit 0
fi

section "build worker"
cargo build
if [[ "${DEMO_KEEP_INDICES:-0}" != 1 ]]; then
  AWS delete-indices --es "$ES_URL" --pattern 'f4a-*'
fi

section "run worker (exits when the queue is idle)"
SQS_QUEUE_URL="$QUEUE_URL" SQS_WAIT_TIME_SECONDS=2 LOG_FORMAT=text \
  target/debug/f4a-indexer --exit-when-idle

section "indexed documents ($ES_URL)"
AWS queue-stats --name "$NAME"
AWS counts --es "$ES_URL" --sample
echo
echo "expected $EXPECTED documents from fixtures/manifest.json"
AWS counts --es "$ES_URL" --expect "$EXPECTED" --expect-dead-letter 0 >/dev/null \
  && echo "OK: document count matches" \
  || { echo "MISMATCH: see counts above" >&2; exit 1; }

section "search"
AWS search --es "$ES_URL"
