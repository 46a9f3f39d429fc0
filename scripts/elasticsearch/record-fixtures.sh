#!/usr/bin/env bash
# Record real Elasticsearch responses as fixtures for the worker's unit tests.
#
#   scripts/elasticsearch/record-fixtures.sh [VERSION] [OUT]   (default: 9.5.3, tests/fixtures/es/VERSION)
#
# Boots three embedded nodes (install.sh builds them) on loopback ports 19270-19272 with data
# under /tmp, sends the requests below with curl and keeps each response body byte for byte as
# OUT/NAME.json, with OUT/NAME.source saying where it came from (version, request) and, for a
# few, OUT/NAME.headers (status line and headers). The nodes are stopped at the end.
#   node 1: default settings (index, bulk, mapping conflicts, refresh, count, blocks, errors)
#   node 2: thread_pool.write.size=1, thread_pool.write.queue_size=2 (item-level 429s)
#   node 3: indexing_pressure.memory.limit=4kb (whole-request 429s)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VERSION="${1:-${F4A_ES_VERSION:-9.5.3}}"
OUT="${2:-$ROOT/tests/fixtures/es/$VERSION}"
P1="${F4A_ES_FIXTURE_PORT:-19270}"
P2=$((P1 + 1))
P3=$((P1 + 2))
WORK="$(mktemp -d /tmp/f4a-es-fixtures.XXXXXX)"
DIR="$("$HERE/install.sh" "$VERSION")"
JAVA="$(cat "$DIR/java")"
# The worker's own bulk query (src/bulk_sink.rs).
WORKER_FILTER='errors,items.*.status,items.*.error.type,items.*.error.reason'

PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

start_node() { # NAME PORT [-E k=v]...
  local name="$1" port="$2"; shift 2
  "$JAVA" -Xms512m -Xmx512m @"$DIR/java.args" --home "$WORK/$name.home" --data "$WORK/$name.data" \
    --port "$port" "$@" >"$WORK/$name.port" 2>"$WORK/$name.log" &
  PIDS+=($!)
}
wait_port() { # NAME
  local n=0
  until [[ -s "$WORK/$1.port" ]]; do
    ((n++ < 600)) || { tail -30 "$WORK/$1.log" >&2; echo "node $1 did not start" >&2; exit 1; }
    sleep 0.5
  done
}

mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.source "$OUT"/*.headers
BASE=""
# rec NAME "what was sent" CURL-ARGS... : body to NAME.json, provenance to NAME.source.
rec() {
  local name="$1" what="$2"; shift 2
  local code
  code="$(curl -sS -o "$OUT/$name.json" -w '%{http_code}' "$@")"
  echo "recorded from a real Elasticsearch $VERSION node (embedded, scripts/elasticsearch) by record-fixtures.sh: $what -> HTTP $code" >"$OUT/$name.source"
  echo "  $name: HTTP $code" >&2
}
# Same, also keeping the status line and headers.
rec_h() {
  local name="$1"; shift
  rec "$@" -D "$OUT/$name.headers"
  sed -i 's/\r$//' "$OUT/$name.headers"
}
J='content-type: application/json'
NDJ='content-type: application/x-ndjson'

start_node plain "$P1"
start_node pool "$P2" -E thread_pool.write.size=1 -E thread_pool.write.queue_size=2
start_node pressure "$P3" -E indexing_pressure.memory.limit=4kb
wait_port plain
wait_port pool
wait_port pressure
echo "[es-fixtures] Elasticsearch $VERSION: plain on $P1, write pool 1/2 on $P2, indexing pressure 4kb on $P3; recording into $OUT" >&2

B="http://127.0.0.1:$P1"
rec_h root root "GET / (served by the launcher's f4a-rest-root stand-in: rest-root is not on Maven Central)" "$B/"
echo "recorded from the embedded Elasticsearch $VERSION node by record-fixtures.sh: GET / -> HTTP 200. NOT Elastic's code: served by the launcher's f4a-rest-root stand-in (the rest-root module is not on Maven Central); values from the node's own Build/cluster state, field order of the distribution. For the real shape see ../spec/root-*.json" >"$OUT/root.source"
rec create-index "PUT /f4a-fixture {1 shard, 0 replicas; mappings: v long, s text, o object}" -XPUT "$B/f4a-fixture" -H "$J" \
  -d '{"settings":{"number_of_shards":1,"number_of_replicas":0},"mappings":{"properties":{"v":{"type":"long"},"s":{"type":"text"},"o":{"type":"object"}}}}'
rec create-index-exists "PUT /f4a-fixture again" -XPUT "$B/f4a-fixture" -H "$J" -d '{}'

cat >"$WORK/conflict.ndjson" <<'NDJSON'
{"index":{"_id":"ok-1","_index":"f4a-fixture"}}
{"v":1,"s":"fine","o":{"a":1}}
{"index":{"_id":"long-not-a-number","_index":"f4a-fixture"}}
{"v":"not-a-number"}
{"index":{"_id":"object-as-value","_index":"f4a-fixture"}}
{"o":"a concrete value"}
{"index":{"_id":"value-as-object","_index":"f4a-fixture"}}
{"s":{"nested":true}}
{"index":{"_id":"ok-2","_index":"f4a-fixture"}}
{"v":2,"new_field":"dynamically mapped"}
{"index":{"_id":"bad-json","_index":"f4a-fixture"}}
{"v":3,
NDJSON
# The conflict bulk without the trailing broken line, and the broken one alone.
head -n 10 "$WORK/conflict.ndjson" >"$WORK/conflict-ok-json.ndjson"
tail -n 2 "$WORK/conflict.ndjson" >"$WORK/broken.ndjson"
rec_h bulk-mapping-conflict bulk-mapping-conflict "POST /_bulk: 2 good docs, long field given a string, object field given a value, text field given an object" \
  -XPOST "$B/_bulk" -H "$NDJ" --data-binary @"$WORK/conflict-ok-json.ndjson"
rec bulk-mapping-conflict-filtered "POST /_bulk?filter_path=$WORKER_FILTER (the worker's query) with the bulk of bulk-mapping-conflict again (its good docs now updates: 200)" \
  -XPOST "$B/_bulk?filter_path=$WORKER_FILTER" -H "$NDJ" --data-binary @"$WORK/conflict-ok-json.ndjson"
rec bulk-broken-json "POST /_bulk whose source line is truncated JSON" \
  -XPOST "$B/_bulk" -H "$NDJ" --data-binary @"$WORK/broken.ndjson"
rec bulk-ok-filtered "POST /_bulk of 2 good docs with the worker's ?filter_path=$WORKER_FILTER" \
  -XPOST "$B/_bulk?filter_path=$WORKER_FILTER" -H "$NDJ" --data-binary @<(sed -n '1,2p;9,10p' "$WORK/conflict.ndjson" | sed 's/ok-/ok-again-/')
rec refresh "POST /f4a-fixture/_refresh" -XPOST "$B/f4a-fixture/_refresh"
rec count "GET /f4a-fixture/_count after the refresh" "$B/f4a-fixture/_count"
rec count-missing-index "GET /no-such-index/_count" "$B/no-such-index/_count"
rec mapping "GET /f4a-fixture/_mapping after dynamic mapping of new_field" "$B/f4a-fixture/_mapping"
rec cluster-health "GET /_cluster/health" "$B/_cluster/health"
# The flood-stage disk block is this index block (the disk monitor sets the same block).
rec block-set "PUT /f4a-fixture/_settings index.blocks.read_only_allow_delete=true" -XPUT "$B/f4a-fixture/_settings" -H "$J" \
  -d '{"index.blocks.read_only_allow_delete":true}'
rec bulk-read-only-allow-delete "POST /_bulk into an index with the read_only_allow_delete (flood-stage) block" \
  -XPOST "$B/_bulk" -H "$NDJ" --data-binary @<(sed -n '1,2p' "$WORK/conflict.ndjson")
rec bulk-read-only-allow-delete-filtered "POST /_bulk?filter_path=$WORKER_FILTER (the worker's query) of 1 doc into the index with the read_only_allow_delete (flood-stage) block" \
  -XPOST "$B/_bulk?filter_path=$WORKER_FILTER" -H "$NDJ" --data-binary @<(sed -n '1,2p' "$WORK/conflict.ndjson")
curl -sS -o /dev/null -XPUT "$B/f4a-fixture/_settings" -H "$J" -d '{"index.blocks.read_only_allow_delete":null}'

O="http://127.0.0.1:$P3"
curl -sS -o /dev/null -XPUT "$O/load" -H "$J" -d '{"settings":{"number_of_shards":3,"number_of_replicas":0}}'
# Whole-request 429: a bulk larger than indexing_pressure.memory.limit (4kb).
python3 - "$WORK/big.ndjson" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(40):
        f.write(json.dumps({"index": {"_index": "load", "_id": "big-%d" % i}}) + "\n")
        f.write(json.dumps({"n": i, "msg": "x" * 200}) + "\n")
PY
rec_h bulk-indexing-pressure-rejected bulk-indexing-pressure-rejected "POST /_bulk of 40 docs (~10 kB) to a node with indexing_pressure.memory.limit=4kb" \
  -XPOST "$O/_bulk" -H "$NDJ" --data-binary @"$WORK/big.ndjson"
rec bulk-indexing-pressure-rejected-filtered "POST /_bulk?filter_path=$WORKER_FILTER (the worker's query) of the same 40 docs to the node with indexing_pressure.memory.limit=4kb (filter_path is not applied to error responses)" \
  -XPOST "$O/_bulk?filter_path=$WORKER_FILTER" -H "$NDJ" --data-binary @"$WORK/big.ndjson"
O="http://127.0.0.1:$P2"
curl -sS -o /dev/null -XPUT "$O/load" -H "$J" -d '{"settings":{"number_of_shards":3,"number_of_replicas":0}}'
# Item-level 429s: 20 parallel bulks of 6 docs over 3 shards at a write pool of 1 with a queue
# of 2; keep one response that has both accepted and rejected items.
python3 - "$O" "$OUT" "$WORKER_FILTER" <<'PY'
import json, sys, threading, urllib.error, urllib.request
base, out, flt = sys.argv[1], sys.argv[2], sys.argv[3]
def body(r):
    lines = []
    for j in range(6):
        lines.append(json.dumps({"index": {"_index": "load", "_id": "r%d-%d" % (r, j)}}))
        lines.append(json.dumps({"n": j, "plant": "p%d" % j}))
    return ("\n".join(lines) + "\n").encode()
def post(path, r, res):
    req = urllib.request.Request(base + path, data=body(r), method="POST",
                                 headers={"content-type": "application/x-ndjson"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            res[r] = (resp.status, resp.read())
    except urllib.error.HTTPError as e:
        res[r] = (e.code, e.read())
found = {}
for attempt in range(30):
    for key, path in (("bulk-write-rejected", "/_bulk"),
                      ("bulk-write-rejected-filtered", "/_bulk?filter_path=" + flt)):
        if key in found:
            continue
        res = {}
        ts = [threading.Thread(target=post, args=(path, attempt * 100 + r, res)) for r in range(20)]
        [t.start() for t in ts]
        [t.join() for t in ts]
        for r, (status, raw) in sorted(res.items()):
            if status != 200:
                continue
            st = [next(iter(i.values()))["status"] for i in json.loads(raw)["items"]]
            if 429 in st and any(s < 300 for s in st):
                found[key] = (status, raw)
                break
    if len(found) == 2:
        break
for key, (status, raw) in found.items():
    open("%s/%s.json" % (out, key), "wb").write(raw)
    print(key, status, file=sys.stderr)
if len(found) < 2:
    sys.exit("no response with both accepted and rejected items after 30 rounds")
PY
for f in bulk-write-rejected bulk-write-rejected-filtered; do
  q=""; [[ "$f" == *filtered ]] && q="?filter_path=$WORKER_FILTER"
  echo "recorded from a real Elasticsearch $VERSION node (embedded, scripts/elasticsearch) by record-fixtures.sh: one of 20 parallel POST /_bulk$q (6 docs each, 3 shards) to a node with thread_pool.write.size=1 and thread_pool.write.queue_size=2 -> HTTP 200 with accepted and rejected items" >"$OUT/$f.source"
done
rec thread-pool-write "GET /_cat/thread_pool/write?format=json&h=name,size,queue_size,rejected after the load" \
  "$O/_cat/thread_pool/write?format=json&h=name,size,queue_size,rejected"
echo "[es-fixtures] $(ls "$OUT"/*.json | wc -l) responses in $OUT" >&2
