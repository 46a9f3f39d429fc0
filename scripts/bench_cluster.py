"""The `cluster` and `footprint` phases of `make bench` (imported by scripts/bench.py).

`cluster`: the real search node's own ceiling for the worker's documents, next to the worker's
own cost.

1. **Record**: the release worker indexes BENCH_CLUSTER_OBJECTS objects of generated records into
   the counting sink with `--save`, so the sink keeps the worker's bulk bodies byte for byte
   (action lines with the deterministic `_id`, `@timestamp`, `event.ingested`, `aws.s3.*`, ...).
2. **Ceiling**: a private node of the stack's engine (`F4A_ENGINE`: OpenSearch or Elasticsearch,
   `F4A_ES_HEAP`, every node setting at its default except the disk threshold, which the
   launchers turn off) takes those bodies replayed in bulks of 500 documents by 1, 2, 4, 8, 16
   concurrent senders, BENCH_CLUSTER_STEP_SECS each (a fresh index name per pass, so every
   request creates documents, never overwrites them). Per step: documents accepted per second,
   requests or items refused with 429, and the node's CPU (user + system of its JVM, from
   /proc) per million documents. The ceiling is the best step before the first rejection.
3. **Worker → node**: the release worker with its defaults (BULK_CONCURRENCY=2, 500 per bulk)
   and the rate limit off indexes the same objects into the node: documents per second (wall
   time of the run, start and the last empty receive included), worker and node CPU per million
   documents, and every document counted in the index.

The sender (this Python process) shares the machine with the node; on two cores that costs the
node part of one, so the ceiling measured here is a floor of what the node takes alone. Each step
records the load average after it: on a machine busy with other work the node gets only its share
of the cores, and its CPU per million documents is the figure that carries over to other hardware.
A warm-up step (4 senders, not counted) runs first: a cold JVM is slow until its JIT has compiled
the indexing path.

`footprint` (issue 17's targets: store <= 0.6x and node CPU <= 0.8x of the dynamic defaults): one
private node; the release worker indexes the same BENCH_FOOTPRINT_RECORDS mixed records (one
object) twice, rate limit off: once with `ES_SETUP=ensure` (the built-in template: keyword strings,
best_compression, refresh 30 s, no replica) and once with `ES_SETUP=off` (the cluster's dynamic
mapping: text + keyword for every string, date detection, refresh 1 s), each into its own index.
Node CPU is counted from the worker's start to 10 s after it exits (the refreshes and merges the
writes caused); then the index is flushed and force-merged to one segment and its primary store
size divided by the documents. The template variant runs second, on a JVM the first run warmed up,
which favours it a little in CPU; the store sizes do not depend on the order.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request


def proc_cpu_secs(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Node:
    """A private real node of the stack's engine (scripts/stack.sh env names its launcher)."""

    def __init__(self, tmp: str) -> None:
        engine = os.environ.get("F4A_ENGINE", "")
        if engine.startswith("elasticsearch"):
            java, args = os.environ["F4A_ELASTICSEARCH_JAVA"], os.environ["F4A_ELASTICSEARCH_ARGS"]
        elif engine.startswith("opensearch"):
            java, args = os.environ["F4A_OPENSEARCH_JAVA"], os.environ["F4A_OPENSEARCH_ARGS"]
        else:
            raise SystemExit(f"needs a real engine (F4A_ENGINE={engine or 'unset'}; osmem has no ceiling)")
        self.heap = os.environ.get("F4A_ES_HEAP", "512m")
        self.home = tempfile.mkdtemp(dir=tmp, prefix="node-")
        self.log_path = os.path.join(self.home, "node.log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [java, f"-Xms{self.heap}", f"-Xmx{self.heap}", f"@{args}", "--home", self.home,
             "--data", os.path.join(self.home, "data"), "--port", "0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log)
        # The launcher prints the bound port once the cluster is yellow.
        line = self.proc.stdout.readline().decode().strip()
        if not line.isdigit():
            self.close()
            raise SystemExit(f"private node did not start (stdout {line!r}); log {self.log_path}")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"
        info = self.get("/")
        v = info.get("version", {})
        self.name = f"{v.get('distribution', 'elasticsearch')} {v.get('number', '?')}"

    def get(self, path: str) -> dict:
        return json.load(urllib.request.urlopen(self.url + path, timeout=60))

    def request(self, method: str, path: str) -> None:
        urllib.request.urlopen(urllib.request.Request(self.url + path, method=method), timeout=120).read()

    def cpu(self) -> float:
        return proc_cpu_secs(self.proc.pid)

    def count(self, pattern: str) -> int:
        self.request("POST", f"/{pattern}/_refresh")
        return self.get(f"/{pattern}/_count")["count"]

    def delete(self, pattern: str) -> None:
        names = [r["index"] for r in self.get(f"/_cat/indices/{pattern}?format=json&h=index")]
        if names:
            self.request("DELETE", "/" + ",".join(names))

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.home, ignore_errors=True)


INDEX_RE = re.compile(rb'"_index":"[^"]*"')
FILTER_PATH = "errors,items.*.status,items.*.error.type,items.*.error.reason"


def load_bodies(path: str, per_bulk: int) -> list[bytes]:
    """The recorded documents, re-cut into bulk bodies with `{INDEX}` where the index name goes."""
    with open(path, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    pairs = len(lines) // 2
    bodies = []
    for start in range(0, pairs, per_bulk):
        chunk = lines[2 * start: 2 * min(pairs, start + per_bulk)]
        for k in range(0, len(chunk), 2):
            chunk[k] = INDEX_RE.sub(b'"_index":"{INDEX}"', chunk[k], count=1)
        bodies.append(b"".join(chunk))
    return bodies


def replay_step(node: Node, bodies: list[bytes], senders: int, secs: float, prefix: str) -> dict:
    """`senders` threads send bodies back to back for `secs` seconds; each pass over the recorded
    bodies goes to a fresh index."""
    lock = threading.Lock()
    state = {"next": 0, "accepted": 0, "rejected_items": 0, "rejected_requests": 0, "other_errors": 0,
             "requests": 0, "latency": [], "first_error": None}
    deadline = time.time() + secs

    def take() -> tuple[int, bytes] | None:
        with lock:
            if time.time() >= deadline:
                return None
            k = state["next"]
            state["next"] += 1
        return k // len(bodies), bodies[k % len(bodies)]

    def sender() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=120)
        while (job := take()) is not None:
            pass_no, body = job
            data = body.replace(b"{INDEX}", f"{prefix}-{pass_no}".encode())
            docs = data.count(b"\n") // 2
            t0 = time.time()
            conn.request("POST", f"/_bulk?filter_path={FILTER_PATH}", body=data,
                         headers={"Content-Type": "application/x-ndjson"})
            resp = conn.getresponse()
            raw = resp.read()
            dt = time.time() - t0
            accepted = rej_items = rej_req = other = 0
            err = None
            if resp.status == 429:
                rej_req = 1
                err = raw[:300].decode(errors="replace")
            elif resp.status != 200:
                other = docs
                err = f"{resp.status} {raw[:300].decode(errors='replace')}"
            else:
                parsed = json.loads(raw)
                if not parsed.get("errors"):
                    accepted = docs
                else:
                    for item in parsed.get("items", []):
                        st = next(iter(item.values())).get("status", 0)
                        if 200 <= st < 300:
                            accepted += 1
                        elif st == 429:
                            rej_items += 1
                            err = err or json.dumps(item)[:300]
                        else:
                            other += 1
                            err = err or json.dumps(item)[:300]
            with lock:
                state["accepted"] += accepted
                state["rejected_items"] += rej_items
                state["rejected_requests"] += rej_req
                state["other_errors"] += other
                state["requests"] += 1
                state["latency"].append(dt)
                if err and state["first_error"] is None:
                    state["first_error"] = err
        conn.close()

    c0, t0 = node.cpu(), time.time()
    threads = [threading.Thread(target=sender) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c1, t1 = node.cpu(), time.time()
    lat = sorted(state.pop("latency")) or [0.0]
    acc = state["accepted"]
    state.update(senders=senders, secs=t1 - t0, loadavg_1m_after=os.getloadavg()[0], docs_per_sec=acc / (t1 - t0),
                 node_cpu_secs=c1 - c0, node_cores_busy=(c1 - c0) / (t1 - t0),
                 node_cpu_secs_per_million_docs=(c1 - c0) / acc * 1e6 if acc else None,
                 bulk_p50_ms=lat[len(lat) // 2] * 1000, bulk_p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000)
    del state["next"]
    return state


def phase_cluster(worker: str, stack, res: dict, sizes: dict, tmp: str, log, sink_cls, worker_env,
                  run_worker_once, gen_file) -> None:
    path = gen_file(sizes["object_records"])
    body = open(path, "rb").read()
    n = sizes["cluster_objects"]
    docs = n * sizes["object_records"]
    per_bulk = 500
    saved = os.path.join(tmp, "cluster-bodies.ndjson")
    if os.path.exists(saved):
        os.remove(saved)

    log(f"cluster: recording the worker's bulk bodies for {n} objects x {sizes['object_records']} records")
    prefix = f"cluster/{int(time.time())}/"
    for i in range(n):
        stack.put(f"{prefix}{i:04d}.ndjson.gz", body)
    stack.wait_for_messages(n)
    rec = sink_cls(save=saved)
    try:
        run_worker_once(worker, worker_env(rec, stack), os.path.join(tmp, "cluster-record-worker.log"))
        got = rec.stats()["docs"]
    finally:
        rec.close()
    if got != docs:
        raise SystemExit(f"cluster: the recording sink got {got} docs, expected {docs}")
    bodies = load_bodies(saved, per_bulk)

    node = Node(tmp)
    out: dict = {"engine": node.name, "heap": node.heap, "docs_per_bulk": per_bulk, "recorded_docs": docs,
                 "recorded_bytes": os.path.getsize(saved), "steps": []}
    try:
        log(f"cluster: {node.name} (heap {node.heap}, default settings) on {node.url}; idle 5 s")
        c0 = node.cpu()
        time.sleep(5)
        out["node_idle_cores"] = (node.cpu() - c0) / 5
        # A cold JVM indexes slowly while its JIT compiles the hot paths: warm it up first.
        warm = replay_step(node, bodies, 4, sizes["cluster_step_secs"], "f4a-ceiling-warmup")
        log(f"cluster: warm-up {warm['docs_per_sec']:.0f} docs/s (not counted)")
        node.delete("f4a-ceiling-*")
        for senders in (1, 2, 4, 8, 16):
            step = replay_step(node, bodies, senders, sizes["cluster_step_secs"], f"f4a-ceiling-c{senders}")
            log(f"cluster: {senders:2d} senders: {step['docs_per_sec']:.0f} docs/s, node "
                f"{step['node_cores_busy']:.2f} cores, {step['rejected_requests']} requests and "
                f"{step['rejected_items']} items refused (429), p50 {step['bulk_p50_ms']:.0f} ms")
            out["steps"].append(step)
            node.delete("f4a-ceiling-*")
            if step["rejected_requests"] or step["rejected_items"] or step["other_errors"]:
                break
            time.sleep(2)
        clean = [s for s in out["steps"] if not (s["rejected_requests"] or s["rejected_items"] or s["other_errors"])]
        first = next((s for s in out["steps"] if s not in clean), None)
        best = max(clean, key=lambda s: s["docs_per_sec"]) if clean else None
        out["ceiling_docs_per_sec"] = best["docs_per_sec"] if best else None
        out["ceiling_senders"] = best["senders"] if best else None
        out["ceiling_node_cpu_secs_per_million_docs"] = best["node_cpu_secs_per_million_docs"] if best else None
        out["first_rejection_senders"] = first["senders"] if first else None
        out["first_rejection"] = first["first_error"] if first else None

        log(f"cluster: the worker (defaults, rate limit off) into {node.name}")
        for i in range(n):
            stack.put(f"{prefix}w{i:04d}.ndjson.gz", body)
        stack.wait_for_messages(n)
        c0 = node.cpu()
        env = worker_env(rec, stack, ES_URL=node.url, ES_INDEX="f4a-worker-docs-%Y.%m.%d",
                         DEAD_LETTER_INDEX="f4a-worker-dead")
        r = run_worker_once(worker, env, os.path.join(tmp, "cluster-worker.log"))
        node_cpu = node.cpu() - c0
        indexed = node.count("f4a-worker-docs-*")
        if indexed != docs:
            raise SystemExit(f"cluster: {indexed} documents in the node after the worker, expected {docs}")
        out["worker"] = {"docs": docs, "wall_secs": r["wall_secs"], "docs_per_sec": docs / r["wall_secs"],
                         "worker_cpu_secs_per_million_docs": r["cpu_secs"] / docs * 1e6,
                         "node_cpu_secs_per_million_docs": node_cpu / docs * 1e6,
                         "worker_peak_rss_mib": r["peak_rss_mib"]}
        log(f"cluster: worker -> node {docs / r['wall_secs']:.0f} docs/s, worker "
            f"{out['worker']['worker_cpu_secs_per_million_docs']:.1f} / node "
            f"{out['worker']['node_cpu_secs_per_million_docs']:.1f} CPU-s per million docs")
    finally:
        node.close()
        stack.delete_prefix(prefix)
        if os.path.exists(saved):
            os.remove(saved)
    res["cluster"] = out


def table_rows(res: dict, row) -> None:
    f = res.get("footprint")
    if f and "store_ratio_template_to_dynamic" in f:
        d, t = f["variants"]["dynamic"], f["variants"]["template"]
        row(f"Store per doc after force-merge, {f['docs'] / 1e3:.0f}k mixed records, {f['engine']}: built-in "
            "template vs dynamic defaults",
            f"{t['store_bytes_per_doc']:.0f} vs {d['store_bytes_per_doc']:.0f} B "
            f"(×{f['store_ratio_template_to_dynamic']:.2f})", "≤ 0.6×", f["store_ratio_template_to_dynamic"] <= 0.6)
        row("Node CPU per million docs: built-in template vs dynamic defaults",
            f"{t['node_cpu_secs_per_million_docs']:.1f} vs {d['node_cpu_secs_per_million_docs']:.1f} CPU-s "
            f"(×{f['cpu_ratio_template_to_dynamic']:.2f})", "≤ 0.8×", f["cpu_ratio_template_to_dynamic"] <= 0.8)
    c = res.get("cluster")
    if not c:
        return
    if c.get("ceiling_docs_per_sec") is not None:
        first = (f"first 429 at {c['first_rejection_senders']} senders" if c.get("first_rejection_senders")
                 else f"no 429 up to {c['steps'][-1]['senders']} senders")
        row(f"Real node ceiling: {c['engine']}, heap {c['heap']}, default settings, bulks of "
            f"{c['docs_per_bulk']} of the worker's documents",
            f"{c['ceiling_docs_per_sec']:.0f} docs/s at {c['ceiling_senders']} senders ({first})")
        row("Real node CPU per million docs at its ceiling",
            f"{c['ceiling_node_cpu_secs_per_million_docs']:.1f} CPU-s")
    w = c.get("worker")
    if w:
        row("Worker → real node, defaults, rate limit off",
            f"{w['docs_per_sec']:.0f} docs/s; worker {w['worker_cpu_secs_per_million_docs']:.2f}, node "
            f"{w['node_cpu_secs_per_million_docs']:.1f} CPU-s per million docs")


def merged_stats(node: Node, pattern: str, timeout: float = 300) -> dict:
    """Force-merge to one segment per shard, then the primaries' stats once the old segment files
    are gone (a merge frees them only when a refresh has opened a reader on the merged segment)."""
    primaries = sum(1 for s in node.get(f"/_cat/shards/{pattern}?format=json&h=prirep") if s["prirep"] == "p")
    node.request("POST", f"/{pattern}/_forcemerge?max_num_segments=1&flush=true")
    deadline = time.time() + timeout
    last = None
    while True:
        node.request("POST", f"/{pattern}/_refresh")
        stats = node.get(f"/{pattern}/_stats/store,docs,segments")["_all"]["primaries"]
        size = stats["store"]["size_in_bytes"]
        if stats["segments"]["count"] <= primaries and size == last:
            return stats
        if time.time() > deadline:
            raise SystemExit(f"footprint: {pattern} did not settle at one segment per shard: {stats['segments']}")
        last = size
        time.sleep(3)


def phase_footprint(worker: str, stack, res: dict, sizes: dict, tmp: str, log, worker_env, run_worker_once,
                    gen_file) -> None:
    records = sizes["footprint_records"]
    path = gen_file(records)
    body = open(path, "rb").read()
    node = Node(tmp)
    out: dict = {"engine": node.name, "heap": node.heap, "docs": records, "variants": {}}
    prefix = f"footprint/{int(time.time())}/"

    class Target:  # worker_env's sink argument: only its URL is used
        url = node.url

    try:
        # A warm-up run so that neither variant pays for the JIT alone.
        for label, setup in (("warmup", "off"), ("dynamic", "off"), ("template", "ensure")):
            key = f"{prefix}{label}.ndjson.gz"
            stack.put(key, body)
            stack.wait_for_messages(1)
            index = f"f4a-footprint-{label}"
            env = worker_env(Target, stack, ES_INDEX=index + "-%Y.%m.%d", DEAD_LETTER_INDEX=f"f4a-fpdead-{label}",
                             ES_SETUP=setup)
            if os.environ.get("F4A_ENGINE", "").startswith("elasticsearch"):
                env["ES_INDEX_CODEC"] = "default"  # see tests/common: the embedded ES node has no zstd codec
            log(f"footprint: {records} records into {node.name} with ES_SETUP={setup} ({label})")
            c0 = node.cpu()
            r = run_worker_once(worker, env, os.path.join(tmp, f"footprint-{label}-worker.log"))
            time.sleep(10)
            node_cpu = node.cpu() - c0
            indexed = node.count(index + "-*")
            if indexed != records:
                raise SystemExit(f"footprint {label}: {indexed} documents in the node, expected {records}")
            stats = merged_stats(node, index + "-*")
            store = stats["store"]["size_in_bytes"]
            segments = stats["segments"]["count"]
            deleted = stats["docs"]["deleted"]
            mapping = node.get(f"/{index}-*/_mapping")
            fields = sum(json.dumps(m).count('"type"') for m in mapping.values())
            out["variants"][label] = {
                "setup": setup, "node_cpu_secs": node_cpu, "node_cpu_secs_per_million_docs": node_cpu / records * 1e6,
                "worker_wall_secs": r["wall_secs"], "store_bytes": store, "store_bytes_per_doc": store / records,
                "mapped_fields": fields, "segments": segments, "deleted_docs": deleted}
            log(f"footprint {label}: {store / records:.0f} B per doc after force-merge, node "
                f"{node_cpu / records * 1e6:.1f} CPU-s per million docs, {fields} mapped fields, {segments} segments, "
                f"{deleted} deleted")
            node.delete(index + "-*")
        d, t = out["variants"]["dynamic"], out["variants"]["template"]
        out["store_ratio_template_to_dynamic"] = t["store_bytes"] / d["store_bytes"]
        out["cpu_ratio_template_to_dynamic"] = t["node_cpu_secs"] / d["node_cpu_secs"]
    finally:
        node.close()
        stack.delete_prefix(prefix)
    res["footprint"] = out
