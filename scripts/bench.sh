#!/usr/bin/env bash
# `make bench`: build the release worker and the single-thread bench, then run scripts/bench.py
# against the local stack (LocalStack for S3/SQS, a counting bulk sink instead of the cluster).
#
#   make bench                      # full run (~10-15 min on 2 shared cores)
#   BENCH_QUICK=1 make bench        # small smoke run (~2 min)
#   BENCH_ONLY=pipeline,chart make bench   # some phases only (pipeline,e2e,compression,memory,idle,startup,image,chart,cluster,footprint)
#
# Sizes: see the BENCH_* variables in scripts/bench.py. Results: bench/results/<timestamp>.json,
# bench/results/latest.md (printed at the end), the chart in docs/rate-chart.png (full run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${F4A_CACHE:-$HOME/.cache/f4a-indexer}"
PLOT_VENV="$CACHE/bench-venv"
REQS="$ROOT/scripts/bench-requirements.txt"
# A target dir of its own: release builds never wait on the debug build's cargo lock.
export CARGO_TARGET_DIR="${BENCH_TARGET_DIR:-$ROOT/target-release}"

log() { echo "[bench] $*" >&2; }

scripts/stack.sh start >&2
eval "$(scripts/stack.sh env)"

# Plotting venv (matplotlib, pinned), rebuilt when the requirements change.
stamp="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [[ ! -x "$PLOT_VENV/bin/python" || "$(cat "$PLOT_VENV/.stamp" 2>/dev/null)" != "$stamp" ]]; then
  log "installing the plotting venv ($PLOT_VENV)"
  rm -rf "$PLOT_VENV"
  "${PYTHON:-python3.11}" -m venv "$PLOT_VENV"
  "$PLOT_VENV/bin/pip" install -q -r "$REQS"
  echo "$stamp" >"$PLOT_VENV/.stamp"
fi

log "building release binaries in $CARGO_TARGET_DIR"
exe() {
  python3 -c '
import json, sys
name = sys.argv[1]
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == name and m.get("executable"):
        print(m["executable"])' "$1" | tail -1
}
build() { nice -n "${BENCH_NICE:-19}" cargo build --release "$@" --message-format=json-render-diagnostics; }
# The worker on its own, as the Dockerfile builds it, and kept aside: building the bench builds
# the binary again with the dev-dependencies' features unified into it (the AWS SDK's default
# HTTPS client with aws-lc-rs), a bigger binary that is not the one that ships.
mkdir -p "$CARGO_TARGET_DIR/bench-worker"
WORKER="$CARGO_TARGET_DIR/bench-worker/f4a-indexer"
cp "$(build --bin f4a-indexer | exe f4a-indexer)" "$WORKER"
PIPELINE_BENCH="$(build --bench pipeline | exe pipeline)"
[[ -x "$WORKER" && -x "$PIPELINE_BENCH" ]] || { log "release build produced no binaries"; exit 1; }

BENCH_PLOT_PYTHON="$PLOT_VENV/bin/python" exec "$F4A_VENV/bin/python" scripts/bench.py \
  --worker "$WORKER" --pipeline-bench "$PIPELINE_BENCH" \
  ${BENCH_ONLY:+--only "$BENCH_ONLY"}
