#!/usr/bin/env python3
"""The benchmark behind `make bench` (run by scripts/bench.sh with the stack venv's python).

    scripts/bench.py --worker target-release/release/f4a-indexer --pipeline-bench PATH [--only a,b]

Phases (each can be picked with --only): pipeline, e2e, compression (ES_COMPRESSION=none vs gzip:
worker CPU and bytes on the wire), memory, idle, startup, image, chart, cluster (the real node's own
ceiling for the worker's documents) and footprint (store size and node CPU with the built-in index
template vs the cluster's dynamic defaults); the last two are in scripts/bench_cluster.py.
Sizes come from the environment (defaults = full run; BENCH_QUICK=1 = small smoke run):

    BENCH_PIPELINE_RECORDS  records in the single-thread file        (200000 | 20000)
    BENCH_RUNS              runs per variant, best counts            (5 | 1)
    BENCH_OBJECT_RECORDS    records per ~500-byte-record object      (20000 = ~10 MB | 5000)
    BENCH_E2E_OBJECTS       objects in the end-to-end run            (30 | 4)
    BENCH_BIG_MIB           uncompressed size of the big object      (1024 | 64)
    BENCH_IDLE_SECS         idle measurement                         (60 | 5)
    BENCH_STARTUP_RUNS      worker starts timed                      (5 | 2)
    BENCH_CHART_RATE        RATE_LIMIT_DOCS_PER_SEC of the chart run (1000 | 500)
    BENCH_CHART_BURSTS      bursts, BENCH_CHART_EVERY seconds apart  (3, 20 | 3, 5)
    BENCH_CHART_OBJECTS     objects per burst                        (5 | 2)
    BENCH_CHART_RECORDS     records per chart object                 (5000 | 1000)
    BENCH_CHART_OUT         chart file                               (docs/rate-chart.png | results dir)
    BENCH_CLUSTER_OBJECTS   objects recorded and indexed into the real node (10 | 2)
    BENCH_CLUSTER_STEP_SECS seconds per concurrency step of the ceiling (15 | 4)
    BENCH_COMPRESSION_OBJECTS objects per ES_COMPRESSION variant      (10 | 2)
    BENCH_FOOTPRINT_RECORDS records indexed per ES_SETUP variant      (200000 | 20000)

Writes bench/results/<timestamp>.json, bench/results/latest.md (also printed) and, for the chart,
bench/results/<timestamp>-rate-series.json. Scratch data lives in bench/results/tmp/ (ignored by git).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import localaws  # noqa: E402  (boto3 clients for LocalStack)
import bench_cluster  # noqa: E402  (the cluster phase)

QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
RESULTS = os.path.join(ROOT, "bench", "results")
TMP = os.path.join(RESULTS, "tmp")
NAME = os.environ.get("BENCH_NAME", "f4a-bench")


def env_int(name: str, full: int, quick: int) -> int:
    v = os.environ.get(name, "").strip()
    return int(v) if v else (quick if QUICK else full)


SIZES = {
    "pipeline_records": env_int("BENCH_PIPELINE_RECORDS", 200_000, 20_000),
    "runs": env_int("BENCH_RUNS", 5, 1),
    "object_records": env_int("BENCH_OBJECT_RECORDS", 20_000, 5_000),
    "e2e_objects": env_int("BENCH_E2E_OBJECTS", 30, 4),
    "big_mib": env_int("BENCH_BIG_MIB", 1024, 64),
    "idle_secs": env_int("BENCH_IDLE_SECS", 60, 5),
    "startup_runs": env_int("BENCH_STARTUP_RUNS", 5, 2),
    "chart_rate": env_int("BENCH_CHART_RATE", 1000, 500),
    "chart_bursts": env_int("BENCH_CHART_BURSTS", 3, 3),
    "chart_every": env_int("BENCH_CHART_EVERY", 20, 5),
    "chart_objects": env_int("BENCH_CHART_OBJECTS", 5, 2),
    "chart_records": env_int("BENCH_CHART_RECORDS", 5_000, 1_000),
    "cluster_objects": env_int("BENCH_CLUSTER_OBJECTS", 10, 2),
    "cluster_step_secs": env_int("BENCH_CLUSTER_STEP_SECS", 15, 4),
    "compression_objects": env_int("BENCH_COMPRESSION_OBJECTS", 10, 2),
    "footprint_records": env_int("BENCH_FOOTPRINT_RECORDS", 200_000, 20_000),
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- data


def gen_file(records: int, kind: str = "mixed", seed: int = 20261124) -> str:
    """A gzip NDJSON file from scripts/gen_fixtures.py, cached in bench/results/tmp."""
    os.makedirs(TMP, exist_ok=True)
    path = os.path.join(TMP, f"{kind}-{records}-{seed}.ndjson.gz")
    if not os.path.exists(path):
        log(f"generating {records} {kind} records -> {path}")
        part = path + ".part"
        subprocess.run(
            [sys.executable, os.path.join(ROOT, "scripts", "gen_fixtures.py"), "--records", str(records),
             "--kind", kind, "--out", part, "--gzip", "--seed", str(seed)],
            check=True,
        )
        os.replace(part, path)
    return path


def uncompressed_size(path: str) -> int:
    with gzip.open(path, "rb") as f:
        n = 0
        while chunk := f.read(1 << 20):
            n += len(chunk)
    return n


# ---------------------------------------------------------------- local stack


class Stack:
    def __init__(self) -> None:
        self.s3 = localaws.client("s3")
        self.sqs = localaws.client("sqs")
        localaws.ensure_bucket(self.s3, NAME)
        self.queue_url, arn, _ = localaws.ensure_queues(self.sqs, NAME, NAME, 5, 300)
        localaws.ensure_notification(self.s3, NAME, arn, "")
        # The idle and startup runs end with a long poll still open; LocalStack would hand the
        # next notifications to that dead poll (invisible for 300 s), so they use another queue.
        self.idle_queue_url, _, _ = localaws.ensure_queues(self.sqs, NAME + "-idle", NAME, 5, 300)
        self.drain()

    def drain(self) -> None:
        """Empty the queue (stale events of an interrupted run would be indexed twice)."""
        try:
            self.sqs.purge_queue(QueueUrl=self.queue_url)
        except self.sqs.exceptions.PurgeQueueInProgress:
            while msgs := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages"):
                self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)],
                )
        time.sleep(1)

    def depth(self) -> int:
        a = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])

    def put(self, key: str, body: bytes) -> None:
        self.s3.put_object(Bucket=NAME, Key=key, Body=body)

    def wait_for_messages(self, n: int, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while self.depth() < n:
            if time.time() > deadline:
                raise SystemExit(f"only {self.depth()} of {n} notifications arrived in {timeout}s")
            time.sleep(0.3)

    def delete_prefix(self, prefix: str) -> None:
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=NAME, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                self.s3.delete_objects(Bucket=NAME, Delete={"Objects": keys})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """scripts/bench_sink.py in its own process (its CPU is not the worker's)."""

    def __init__(self, save: str | None = None) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "scripts", "bench_sink.py"), "--port", str(self.port)]
            + (["--save", save] if save else []),
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(self.url + "/", timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("bench sink did not start")

    def stats(self) -> dict:
        return json.load(urllib.request.urlopen(self.url + "/_bench/stats", timeout=10))

    def reset(self) -> None:
        urllib.request.urlopen(urllib.request.Request(self.url + "/_bench/reset", method="POST"), timeout=5).read()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def worker_env(sink: Sink, stack: Stack, idle_queue: bool = False, **extra: str) -> dict:
    env = dict(os.environ)
    for k in [k for k in env if k.startswith(("BULK_", "RATE_LIMIT_", "SQS_", "OTEL_"))]:
        del env[k]
    env.update(
        SQS_QUEUE_URL=stack.idle_queue_url if idle_queue else stack.queue_url,
        ES_URL=sink.url,
        LOG_FORMAT="json",
        RUST_LOG="info",
        HEALTH_ADDR="127.0.0.1:0",
        RATE_LIMIT_DOCS_PER_SEC="0",
        SQS_WAIT_TIME_SECONDS="1",
    )
    env.update(extra)
    return env


def run_worker_once(worker: str, env: dict, log_path: str, timeout: float = 1800) -> dict:
    """`/usr/bin/time -v f4a-indexer --exit-when-idle`: wall, CPU (user+sys) and peak RSS."""
    time_out = log_path + ".time"
    started = time.time()
    with open(log_path, "wb") as logf:
        proc = subprocess.run(
            ["/usr/bin/time", "-o", time_out, "-f", "%e %U %S %M", worker, "--exit-when-idle"],
            env=env, stderr=logf, stdout=subprocess.DEVNULL, timeout=timeout,
        )
    if proc.returncode != 0:
        raise SystemExit(f"worker exited with {proc.returncode}; see {log_path}")
    last = open(time_out).read().strip().splitlines()[-1].split()
    wall, user, sys_, rss_kb = float(last[0]), float(last[1]), float(last[2]), int(last[3])
    return {"started": started, "wall_secs": wall, "cpu_secs": user + sys_, "user_secs": user, "sys_secs": sys_,
            "peak_rss_mib": rss_kb / 1024}


def log_lines(path: str):
    with open(path, "rb") as f:
        for raw in f:
            try:
                yield json.loads(raw)
            except ValueError:
                continue


def rfc3339(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------- phases


def phase_pipeline(bench_bin: str, res: dict) -> None:
    path = gen_file(SIZES["pipeline_records"])
    log(f"single-thread baseline vs pipeline on {path} ({SIZES['runs']} runs each)")
    out = subprocess.run([bench_bin, path, "--runs", str(SIZES["runs"])], check=True, capture_output=True, text=True)
    res["pipeline"] = json.loads(out.stdout)


def phase_e2e(worker: str, stack: Stack, sink: Sink, res: dict) -> None:
    path = gen_file(SIZES["object_records"])
    body = open(path, "rb").read()
    n = SIZES["e2e_objects"]
    docs = n * SIZES["object_records"]
    raw = uncompressed_size(path) * n
    prefix = f"e2e/{int(time.time())}/"
    log(f"end to end: {n} objects x {SIZES['object_records']} records ({raw / 1e6:.0f} MB uncompressed), rate limit off")
    for i in range(n):
        stack.put(f"{prefix}{i:04d}.ndjson.gz", body)
    stack.wait_for_messages(n)
    sink.reset()
    r = run_worker_once(worker, worker_env(sink, stack), os.path.join(TMP, "e2e-worker.log"))
    st = sink.stats()
    if st["docs"] != docs:
        raise SystemExit(f"end to end: sink got {st['docs']} docs, expected {docs}")
    last = max(e[0] for e in st["events"])
    first = min(e[0] for e in st["events"])
    busy = last - r["started"]
    r.update(docs=docs, uncompressed_bytes=raw, bulk_bytes=st["bytes"], bulk_requests=st["requests"],
             docs_per_sec=docs / busy, mb_per_sec=raw / 1e6 / busy, secs_to_last_doc=busy,
             secs_first_to_last_doc=last - first,
             cpu_secs_per_million_docs=r["cpu_secs"] / docs * 1e6,
             avg_record_bytes=raw / docs)
    res["e2e"] = r
    stack.delete_prefix(prefix)


def phase_compression(worker: str, stack: Stack, sink: Sink, res: dict) -> None:
    """The same objects indexed with ES_COMPRESSION=none and =gzip: worker CPU per million
    documents and bytes on the wire per document (the sink counts both the body as received and
    its NDJSON once gunzipped)."""
    path = gen_file(SIZES["object_records"])
    body = open(path, "rb").read()
    n = SIZES["compression_objects"]
    docs = n * SIZES["object_records"]
    out = {}
    for mode in ("none", "gzip"):
        prefix = f"compression/{int(time.time())}-{mode}/"
        log(f"compression: {n} objects x {SIZES['object_records']} records with ES_COMPRESSION={mode}")
        for i in range(n):
            stack.put(f"{prefix}{i:04d}.ndjson.gz", body)
        stack.wait_for_messages(n)
        sink.reset()
        r = run_worker_once(worker, worker_env(sink, stack, ES_COMPRESSION=mode),
                            os.path.join(TMP, f"compression-{mode}-worker.log"))
        st = sink.stats()
        stack.delete_prefix(prefix)
        if st["docs"] != docs:
            raise SystemExit(f"compression {mode}: sink got {st['docs']} docs, expected {docs}")
        out[mode] = {"docs": docs, "cpu_secs": r["cpu_secs"], "wall_secs": r["wall_secs"],
                     "cpu_secs_per_million_docs": r["cpu_secs"] / docs * 1e6,
                     "wire_bytes": st["wire_bytes"], "ndjson_bytes": st["bytes"],
                     "wire_bytes_per_doc": st["wire_bytes"] / docs, "ndjson_bytes_per_doc": st["bytes"] / docs,
                     "peak_rss_mib": r["peak_rss_mib"]}
    out["wire_ratio_gzip_to_none"] = out["gzip"]["wire_bytes"] / out["none"]["wire_bytes"]
    out["cpu_ratio_gzip_to_none"] = out["gzip"]["cpu_secs"] / out["none"]["cpu_secs"]
    res["compression"] = out


def phase_memory(worker: str, stack: Stack, sink: Sink, res: dict) -> None:
    path = gen_file(SIZES["object_records"])
    member = open(path, "rb").read()
    small_raw = uncompressed_size(path)
    copies = max(1, math.ceil(SIZES["big_mib"] * 2**20 / small_raw))
    out = {}
    for label, k in (("small", 1), ("big", copies)):
        prefix = f"mem/{int(time.time())}-{label}/"
        body = member * k  # concatenated gzip members, as Firehose writes them
        log(f"memory: one object of {small_raw * k / 2**20:.0f} MiB uncompressed ({len(body) / 2**20:.0f} MiB gzip)")
        stack.put(prefix + "object.ndjson.gz", body)
        del body
        stack.wait_for_messages(1)
        sink.reset()
        r = run_worker_once(worker, worker_env(sink, stack), os.path.join(TMP, f"mem-{label}-worker.log"))
        st = sink.stats()
        expect = k * SIZES["object_records"]
        if st["docs"] != expect:
            raise SystemExit(f"memory ({label}): sink got {st['docs']} docs, expected {expect}")
        r.update(docs=expect, uncompressed_bytes=small_raw * k, compressed_bytes=len(member) * k,
                 cpu_secs_per_million_docs=r["cpu_secs"] / expect * 1e6,
                 docs_per_sec=expect / (max(e[0] for e in st["events"]) - r["started"]))
        out[label] = r
        stack.delete_prefix(prefix)
    out["rss_ratio_big_to_small"] = out["big"]["peak_rss_mib"] / out["small"]["peak_rss_mib"]
    res["memory"] = out


def proc_cpu_secs(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def phase_idle(worker: str, stack: Stack, sink: Sink, res: dict) -> None:
    secs = SIZES["idle_secs"]
    log(f"idle: {secs} s with an empty queue (default long poll)")
    env = worker_env(sink, stack, idle_queue=True)
    del env["SQS_WAIT_TIME_SECONDS"]  # the default, 20 s
    with open(os.path.join(TMP, "idle-worker.log"), "wb") as logf:
        proc = subprocess.Popen([worker], env=env, stderr=logf, stdout=subprocess.DEVNULL)
    try:
        time.sleep(3)
        c0, t0 = proc_cpu_secs(proc.pid), time.time()
        time.sleep(secs)
        c1, t1 = proc_cpu_secs(proc.pid), time.time()
        rss = int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{proc.pid}/status").read()).group(1)) / 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    res["idle"] = {"secs": t1 - t0, "cpu_secs": c1 - c0, "cpu_percent_of_core": (c1 - c0) / (t1 - t0) * 100,
                   "rss_mib": rss}


def phase_startup(worker: str, stack: Stack, sink: Sink, res: dict) -> None:
    """Process start → the first SQS request leaves (the smithy 'transmit' phase of ReceiveMessage)."""
    env = worker_env(sink, stack, idle_queue=True,
                     RUST_LOG="info,aws_smithy_runtime_api::client::interceptors::context=debug")
    del env["SQS_WAIT_TIME_SECONDS"]
    times = []
    for i in range(SIZES["startup_runs"]):
        path = os.path.join(TMP, f"startup-{i}.log")
        logf = open(path, "wb")
        t0 = time.time()
        proc = subprocess.Popen([worker], env=env, stderr=logf, stdout=subprocess.DEVNULL)
        found = None
        deadline = time.time() + 10
        while found is None and time.time() < deadline:
            time.sleep(0.05)
            for line in log_lines(path):
                if line.get("message") == "entering 'transmit' phase":
                    found = rfc3339(line["timestamp"])
                    break
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        logf.close()
        if found is None:
            raise SystemExit(f"startup: no receive seen; see {path}")
        times.append((found - t0) * 1000)
    res["startup"] = {"ms": sorted(times), "median_ms": sorted(times)[len(times) // 2]}


def phase_image(worker: str, res: dict) -> None:
    """scripts/image_size.sh: the runtime stage on a distroless/cc-debian12 replica (podman)."""
    out = subprocess.run([os.path.join(ROOT, "scripts", "image_size.sh"), worker], capture_output=True, text=True)
    if out.returncode == 77:
        log("image: skipped: " + out.stderr.strip().splitlines()[-1])
        return
    if out.returncode != 0:
        raise SystemExit(f"image_size.sh failed: {out.stderr.strip()[-500:]}")
    res["image"] = json.loads(out.stdout)


def phase_chart(worker: str, stack: Stack, sink: Sink, res: dict, stamp: str) -> None:
    rate, bursts, every = SIZES["chart_rate"], SIZES["chart_bursts"], SIZES["chart_every"]
    per_obj, objs = SIZES["chart_records"], SIZES["chart_objects"]
    path = gen_file(per_obj, seed=7)
    body = open(path, "rb").read()
    total = bursts * objs * per_obj
    log(f"chart: {bursts} bursts of {objs} objects x {per_obj} records, {every} s apart, "
        f"RATE_LIMIT_DOCS_PER_SEC={rate}")
    sink.reset()
    log_path = os.path.join(TMP, "chart-worker.log")
    env = worker_env(sink, stack, RATE_LIMIT_DOCS_PER_SEC=str(rate))
    del env["SQS_WAIT_TIME_SECONDS"]
    logf = open(log_path, "wb")
    proc = subprocess.Popen([worker], env=env, stderr=logf, stdout=subprocess.DEVNULL)
    arrivals = []
    prefix = f"chart/{int(time.time())}/"
    try:
        time.sleep(2)
        t0 = time.time()
        for b in range(bursts):
            while time.time() < t0 + b * every:
                time.sleep(0.05)
            for i in range(objs):
                stack.put(f"{prefix}b{b}-{i}.ndjson.gz", body)
                arrivals.append([time.time(), per_obj])
        deadline = time.time() + total / rate * 3 + 60
        while sink.stats()["docs"] < total:
            if time.time() > deadline or proc.poll() is not None:
                raise SystemExit(f"chart: only {sink.stats()['docs']} of {total} docs arrived; see {log_path}")
            time.sleep(0.5)
        time.sleep(2)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        logf.close()
    reads = [[rfc3339(l["timestamp"]), l["records"]] for l in log_lines(log_path) if l.get("message") == "object read"]
    pushed = [[e[0], e[1]] for e in sink.stats()["events"]]
    series = {"t0": t0, "rate_limit_docs_per_sec": rate, "burst_every_secs": every, "bursts": bursts,
              "objects_per_burst": objs, "records_per_object": per_obj,
              "arrived": arrivals, "read": reads, "pushed": pushed}
    series_path = os.path.join(RESULTS, f"{stamp}-rate-series.json")
    with open(series_path, "w") as f:
        json.dump(series, f)
    chart = os.environ.get("BENCH_CHART_OUT") or (
        os.path.join(RESULTS, f"{stamp}-rate-chart.png") if QUICK else os.path.join(ROOT, "docs", "rate-chart.png"))
    os.makedirs(os.path.dirname(chart), exist_ok=True)
    plot_py = os.environ.get("BENCH_PLOT_PYTHON", sys.executable)
    subprocess.run([plot_py, os.path.join(ROOT, "scripts", "bench_chart.py"), series_path, chart], check=True)
    # Steady-state push rate: whole seconds from the first push to the end of the backlog.
    secs = {}
    for t, d in pushed:
        secs[int(t)] = secs.get(int(t), 0) + d
    keys = sorted(secs)[1:-1]
    window = [secs.get(k, 0) for k in range(keys[0], keys[-1] + 1)] if keys else []
    res["chart"] = {"series": os.path.relpath(series_path, ROOT), "chart": os.path.relpath(chart, ROOT),
                    "docs": total, "push_mean_per_sec": sum(window) / len(window) if window else None,
                    "push_max_per_sec": max(window) if window else None,
                    "pull_max_per_sec": max_per_sec(reads), "arrive_max_per_sec": max_per_sec(arrivals)}


def max_per_sec(events) -> int:
    secs: dict[int, int] = {}
    for t, d in events:
        secs[int(t)] = secs.get(int(t), 0) + d
    return max(secs.values()) if secs else 0


# ---------------------------------------------------------------- report


def fmt(v, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)


def table(res: dict) -> str:
    rows = []

    def row(what, value, target="", ok=None):
        rows.append((what, value, target, "" if ok is None else ("yes" if ok else "**no**")))

    p = res.get("pipeline")
    if p:
        b, w = p["baseline"], p["pipeline"]
        row("Baseline: gunzip + serde_json parse + re-serialize, 1 thread",
            f"{b['mb_per_sec']:.0f} MB/s, {b['docs_per_sec'] / 1e3:.0f}k docs/s")
        row("Pipeline: decompress → frame → decode → normalize → encode, 1 thread",
            f"{w['mb_per_sec']:.0f} MB/s, {w['docs_per_sec'] / 1e3:.0f}k docs/s")
        row("Pipeline / baseline", f"{p['ratio']:.2f}", "≥ 0.8", p["ratio"] >= 0.8)
        st = [("gunzip", "stage_gunzip"), ("+ frame", "stage_frame"), ("+ decode", "stage_decode"),
              ("+ normalize", "stage_normalize"), ("+ encode + batch", "pipeline")]
        per_doc = [p[k]["best_secs"] / w["docs"] * 1e6 for _, k in st]
        parts = [f"{n} {per_doc[i] - (per_doc[i - 1] if i else 0):.2f}" for i, (n, _) in enumerate(st)]
        row("Pipeline cost per doc by stage (µs)", ", ".join(parts))
        dz = p.get("decompress")
        if dz:
            docs = w["docs"] or 1
            row("Decompression per format, 1 thread (MB/s of output; µs per doc; ratio)",
                "; ".join(f"{n} {d['mb_per_sec']:.0f} MB/s, {d['best_secs'] / docs * 1e6:.2f} µs, {d['ratio']:.1f}×"
                          for n, d in dz.items()))
    e = res.get("e2e")
    if e:
        row(f"End to end, rate limit off ({e['docs'] / 1e3:.0f}k docs of ~{e['avg_record_bytes']:.0f} B)",
            f"{e['docs_per_sec'] / 1e3:.1f}k docs/s, {e['mb_per_sec']:.0f} MB/s")
        row("End to end: worker CPU per million docs", f"{e['cpu_secs_per_million_docs']:.2f} CPU-s", "≤ 4",
            e["cpu_secs_per_million_docs"] <= 4)
        row("End to end: worker peak RSS", f"{e['peak_rss_mib']:.1f} MiB")
    z = res.get("compression")
    if z:
        n, g = z["none"], z["gzip"]
        row("Request compression: worker CPU per million docs, ES_COMPRESSION none / gzip",
            f"{n['cpu_secs_per_million_docs']:.2f} / {g['cpu_secs_per_million_docs']:.2f} CPU-s "
            f"(×{z['cpu_ratio_gzip_to_none']:.2f})")
        row("Request compression: bytes on the wire per doc, none / gzip",
            f"{n['wire_bytes_per_doc']:.0f} / {g['wire_bytes_per_doc']:.0f} B (×{z['wire_ratio_gzip_to_none']:.2f})")
    m = res.get("memory")
    if m:
        s, g = m["small"], m["big"]
        row(f"Peak RSS, one {s['uncompressed_bytes'] / 1e6:.0f} MB object", f"{s['peak_rss_mib']:.1f} MiB", "< 64 MiB",
            s["peak_rss_mib"] < 64)
        row(f"Peak RSS, one {g['uncompressed_bytes'] / 2**30:.2f} GiB object ({g['docs'] / 1e6:.2f}M docs)",
            f"{g['peak_rss_mib']:.1f} MiB", "< 64 MiB", g["peak_rss_mib"] < 64)
        row("Peak RSS big / small", f"{m['rss_ratio_big_to_small']:.2f}", "≤ 1.10",
            m["rss_ratio_big_to_small"] <= 1.10)
    i = res.get("idle")
    if i:
        row(f"Idle CPU, empty queue, {i['secs']:.0f} s", f"{i['cpu_percent_of_core']:.2f} % of a core", "< 1 %",
            i["cpu_percent_of_core"] < 1)
    if "binary_bytes" in res:
        mb = res["binary_bytes"] / 1e6
        row("Release binary size", f"{mb:.1f} MB", "< 25 MB", mb < 25)
    im = res.get("image")
    if im:
        mb = im["image_bytes"] / 1e6
        row("Image size: runtime stage on a distroless/cc-debian12 replica (uncompressed)",
            f"{mb:.1f} MB (base {im['base_bytes'] / 1e6:.1f} MB)", "< 40 MB", mb < 40)
    s = res.get("startup")
    if s:
        row(f"Startup to first ReceiveMessage (median of {len(s['ms'])})", f"{s['median_ms']:.0f} ms", "< 200 ms",
            s["median_ms"] < 200)
    c = res.get("chart")
    if c:
        row(f"Bursty run at RATE_LIMIT_DOCS_PER_SEC={res['sizes']['chart_rate']}: push mean / max per s",
            f"{fmt(c['push_mean_per_sec'], '.0f')} / {fmt(c['push_max_per_sec'], '.0f')} "
            f"(arrivals peak {c['arrive_max_per_sec']}/s)")
    bench_cluster.table_rows(res, row)
    out = ["| Measurement | Result | Target | Met |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    return "\n".join(out)


def machine() -> dict:
    model = ""
    try:
        model = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu_model": model, "kernel": platform.release(), "rustc": rustc,
            "git": rev + ("-dirty" if dirty else ""), "loadavg_at_start": os.getloadavg(),
            "mem_total_mib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", required=True, help="release f4a-indexer binary")
    p.add_argument("--pipeline-bench", required=True, help="the benches/pipeline.rs binary")
    p.add_argument("--only", default="pipeline,e2e,compression,memory,idle,startup,image,chart,cluster,footprint")
    a = p.parse_args()
    only = set(a.only.split(","))
    os.makedirs(TMP, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    started = time.time()
    res: dict = {"timestamp": stamp, "quick": QUICK, "sizes": SIZES, "machine": machine(),
                 "binary_bytes": os.path.getsize(a.worker)}
    stack = sink = None
    errors = res["errors"] = {}

    def phase(name, fn, *args):
        if name not in only:
            return
        try:
            fn(*args)
        except (Exception, SystemExit) as e:  # one failed phase still leaves a table of the others
            log(f"phase {name} FAILED: {e}")
            errors[name] = str(e)

    phase("pipeline", phase_pipeline, a.pipeline_bench, res)
    try:
        if only & {"e2e", "compression", "memory", "idle", "startup", "chart", "cluster", "footprint"}:
            stack, sink = Stack(), Sink()
        phase("e2e", phase_e2e, a.worker, stack, sink, res)
        phase("compression", phase_compression, a.worker, stack, sink, res)
        phase("memory", phase_memory, a.worker, stack, sink, res)
        phase("idle", phase_idle, a.worker, stack, sink, res)
        phase("startup", phase_startup, a.worker, stack, sink, res)
        phase("image", phase_image, a.worker, res)
        phase("chart", phase_chart, a.worker, stack, sink, res, stamp)
        phase("cluster", bench_cluster.phase_cluster, a.worker, stack, res, SIZES, TMP, log, Sink, worker_env,
              run_worker_once, gen_file)
        phase("footprint", bench_cluster.phase_footprint, a.worker, stack, res, SIZES, TMP, log, worker_env,
              run_worker_once, gen_file)
    finally:
        if sink:
            sink.close()
    res["bench_secs"] = time.time() - started
    res["machine"]["loadavg_at_end"] = os.getloadavg()
    md = table(res)
    json_path = os.path.join(RESULTS, f"{stamp}.json")
    with open(json_path, "w") as f:
        json.dump(res, f, indent=2)
    mach = res["machine"]
    header = (f"f4a-indexer bench {stamp}{' (quick)' if QUICK else ''}: {mach['cpus']} CPUs ({mach['cpu_model']}), "
              f"load {mach['loadavg_at_start'][0]:.1f} at start, {mach['rustc']}, git {mach['git']}, "
              f"{res['bench_secs']:.0f} s\n\n")
    with open(os.path.join(RESULTS, "latest.md"), "w") as f:
        f.write(header + md + "\n" + "".join(f"\nphase {n} failed: {e}\n" for n, e in errors.items()))
    print(header + md)
    for name, err in errors.items():
        print(f"\nphase {name} failed: {err}")
    log(f"wrote {os.path.relpath(json_path, ROOT)} and bench/results/latest.md")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
