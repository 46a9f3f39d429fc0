#!/usr/bin/env python3
"""Deterministic test fixtures for f4a-indexer (stdlib only, any python3).

    scripts/gen_fixtures.py                      # (re)write fixtures/ + fixtures/manifest.json
    scripts/gen_fixtures.py --check              # fail if fixtures/ differs from what would be written
    scripts/gen_fixtures.py --records 1000000 --kind te --out /tmp/te.ndjson.gz --gzip   # bench input
    scripts/gen_fixtures.py --records 20000 --kind mixed --out /tmp/mixed.ndjson.gz --gzip  # TE + app logs
    scripts/gen_fixtures.py --skip-compressed    # stdlib only: keep the zstd/ZIP/Snappy fixtures as they are

Everything is seeded; gzip headers carry mtime=0 and no file name, so the same
zlib produces byte-identical files. The zstd, ZIP and Snappy fixtures come from
scripts/gen_compressed_fixtures.py (needs `apt-get install zstd zip` and
`pip install -r scripts/fixtures-requirements.txt`); a committed one is kept while it
still verifies, so other tool versions do not churn it.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import os
import random
import sys
import zlib
from datetime import datetime, timedelta, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures")
SEED = 20261124

# ---------------------------------------------------------------- helpers


def gz(data: bytes) -> bytes:
    """Reproducible gzip: fixed mtime, no file name."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="", compresslevel=6) as f:
        f.write(data)
    return buf.getvalue()


def ndjson(records) -> bytes:
    return b"".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False).encode() + b"\n" for r in records)


def rfc3339_ms(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def utc_date(t: datetime) -> str:
    return t.strftime("%Y.%m.%d")


# ---------------------------------------------------------------- Tennessee Eastman

# Steady-state base values of the TE process (Downs & Vogel 1993), so magnitudes are realistic.
XMEAS_BASE = [
    0.25052, 3664.0, 4509.3, 9.3477, 26.902, 42.339, 2705.0, 75.0, 120.40, 0.33712,  # 1-10
    80.109, 50.0, 2633.7, 25.160, 50.0, 3102.2, 22.949, 65.731, 230.31, 341.43,  # 11-20
    94.599, 77.297, 32.188, 8.8933, 26.383, 6.8820, 18.776, 1.6567, 32.958, 13.823,  # 21-30
    23.978, 1.2565, 18.579, 2.2633, 4.8436, 2.2986, 0.01787, 0.83570, 0.09858, 53.724,  # 31-40
    43.828,  # 41
]
XMV_BASE = [63.053, 53.980, 24.644, 61.302, 22.210, 40.064, 38.100, 46.534, 47.446, 41.106, 18.114]


def sig(v: float, digits: int = 5) -> float:
    """Round to `digits` significant digits (sensor-like precision, short JSON)."""
    if v == 0:
        return 0.0
    return round(v, digits - 1 - int(math.floor(math.log10(abs(v)))))


def te_records(n: int, seed: int = SEED, start: datetime | None = None, run_id: str = "te-run-0007"):
    """TE sensor samples, 50-100 per second of simulated time (10-20 ms apart).

    A fault (IDV 6, A feed loss) is active for the middle fifth of the run: xmeas_1
    drops towards 0 and reactor pressure rises, as in the benchmark data sets.
    """
    rng = random.Random(seed)
    t = start or datetime(2026, 11, 24, 23, 59, 54, tzinfo=timezone.utc)
    drift = [0.0] * len(XMEAS_BASE)
    fault_from, fault_to = int(n * 0.6), int(n * 0.8)
    for i in range(n):
        fault = 6 if fault_from <= i < fault_to else 0
        rec = {"@timestamp": rfc3339_ms(t), "plant": "TEP-A", "run_id": run_id, "sample": i}
        for k, base in enumerate(XMEAS_BASE):
            drift[k] = 0.98 * drift[k] + rng.gauss(0, 0.002)  # slow AR(1) process drift
            v = base * (1 + drift[k] + rng.gauss(0, 0.004))
            if fault and k == 0:
                v = base * max(0.0, 1 - (i - fault_from) / 40) + abs(rng.gauss(0, 0.002))
            if fault and k == 6:
                v = base * (1 + 0.0004 * (i - fault_from))
            rec[f"xmeas_{k + 1}"] = sig(v)
        for k, base in enumerate(XMV_BASE):
            rec[f"xmv_{k + 1}"] = sig(base + rng.gauss(0, 0.3), 4)
        rec["fault"] = fault
        yield rec
        t += timedelta(milliseconds=rng.randint(10, 20))


# ---------------------------------------------------------------- application logs

SERVICES = ["checkout", "auth", "catalog", "search", "payments"]
PATHS = ["/api/cart", "/api/login", "/api/items/{id}", "/api/search?q=shoes", "/api/pay", "/healthz"]
LEVELS = ["DEBUG", "INFO", "INFO", "INFO", "INFO", "WARN", "ERROR"]


def applog_records(n: int, seed: int = SEED + 1, start_ms: int = 1795550400000):
    """Application logs with epoch-millisecond `timestamp` (a number).

    start_ms default = 2026-11-24T20:00:00Z (about a minute of logs). Every 7th record uses the dotted key
    "log.level" instead of "level"; every 50th is a login event with "event": "login".
    """
    rng = random.Random(seed)
    ts = start_ms
    for i in range(n):
        ts += rng.randint(5, 400)
        svc = rng.choice(SERVICES)
        status = rng.choices([200, 201, 204, 301, 404, 500, 503], [60, 8, 5, 3, 10, 3, 1])[0]
        level = "ERROR" if status >= 500 else ("WARN" if status >= 400 else rng.choice(LEVELS[:5]))
        method = rng.choice(["GET", "GET", "GET", "POST", "PUT", "DELETE"])
        path = rng.choice(PATHS).replace("{id}", str(rng.randint(1, 99999)))
        dur = round(rng.lognormvariate(3, 0.8), 1)
        rec = {
            "timestamp": ts,
            "service": svc,
            "message": f"{method} {path} -> {status} in {dur}ms",
            "http": {"method": method, "path": path, "status": status, "duration_ms": dur},
            "host": f"ip-10-0-{rng.randint(0, 3)}-{rng.randint(2, 254)}",
            "trace_id": f"{rng.getrandbits(128):032x}",
        }
        if i % 7 == 3:
            rec["log.level"] = level.lower()  # ECS-style dotted key, no "level"
        else:
            rec["level"] = level
        if i % 50 == 10:
            rec["event"] = "login"
            rec["user"] = {"id": f"u{rng.randint(1000, 9999)}", "mfa": rng.random() < 0.5}
            rec["message"] = f"user login ok from {rec['host']}"
        yield rec


def mixed_records(n: int, seed: int = SEED):
    """One TE sensor sample (~1,000 bytes) for every two application logs (~250 bytes): a
    ~500-byte average record (240-1,000 bytes), both kinds interleaved as on a shared stream."""
    te = te_records(n // 3 + 1, seed=seed)
    logs = applog_records(n - n // 3, seed=seed + 1)
    for i in range(n):
        yield next(te) if i % 3 == 0 else next(logs)


# ---------------------------------------------------------------- fixtures


def cloudwatch_members(rng: random.Random):
    """CloudWatch Logs subscription payloads as they reach S3 through Firehose:
    each payload is a gzip member (CWL compresses it), Firehose concatenates them."""
    control = {
        "messageType": "CONTROL_MESSAGE",
        "owner": "CloudwatchLogs",
        "logGroup": "",
        "logStream": "",
        "subscriptionFilters": [],
        "logEvents": [
            {"id": "", "timestamp": 1795600000000, "message": "CWL CONTROL MESSAGE: Checking health of destination Firehose."}
        ],
    }
    msgs = [control]
    ts = 1795600001000  # 2026-11-25T09:46:41Z
    ev_id = 37_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000_000
    for stream, n in (("2026/11/25/[$LATEST]0a1b2c3d", 12), ("2026/11/25/[$LATEST]4e5f6a7b", 20), ("i-0abc1234def567890", 8)):
        events = []
        for j in range(n):
            ts += rng.randint(1, 900)
            ev_id += rng.randint(1, 10**6)
            if j % 3 == 0:
                message = json.dumps({"level": "info", "msg": "request handled", "latency_ms": rng.randint(1, 300), "req": j})
            elif j % 3 == 1:
                message = f"START RequestId: {rng.getrandbits(64):016x} Version: $LATEST"
            else:
                message = f"{rng.choice(['INFO', 'WARN', 'ERROR'])} worker-{rng.randint(1, 4)}: processed batch {j} ({rng.randint(1, 500)} items)\n"
            events.append({"id": str(ev_id), "timestamp": ts, "message": message})
        msgs.append(
            {
                "messageType": "DATA_MESSAGE",
                "owner": "123456789012",
                "logGroup": "/aws/lambda/f4a-demo" if "LATEST" in stream else "/ec2/app",
                "logStream": stream,
                "subscriptionFilters": ["f4a-to-firehose"],
                "logEvents": events,
            }
        )
    return msgs


def truncate_mid_record(raw: bytes, margin: int = 24) -> tuple[bytes, int]:
    """Cut the gzip stream near its middle at a point where everything a decoder can
    produce ends well inside a record (>= margin bytes from any newline), so any
    streaming inflater (zlib, miniz_oxide) yields the same complete records."""
    plain = gzip.decompress(raw)
    newlines = [i for i, b in enumerate(plain) if b == 0x0A]
    for cut in range(len(raw) // 2, len(raw) - 16):
        d = zlib.decompressobj(wbits=31)
        out = d.decompress(raw[:cut])
        prev = max([n for n in newlines if n < len(out)], default=-1)
        nxt = min([n for n in newlines if n >= len(out)], default=len(plain))
        if len(out) - prev > margin and nxt - len(out) > margin:
            return raw[:cut], out.count(b"\n")
    raise RuntimeError("no suitable cut point")


def applog_fixture() -> tuple[list[dict], dict[str, int]]:
    """The 300 application logs of app-logs.ndjson.gz (also packed by the compressed fixtures)."""
    logs = list(applog_records(300))
    by_day: dict[str, int] = {}
    for r in logs:
        d = utc_date(datetime.fromtimestamp(r["timestamp"] / 1000, tz=timezone.utc))
        by_day[d] = by_day.get(d, 0) + 1
    return logs, by_day


def elasticsearch_log() -> bytes:
    """Elasticsearch 6.x's plain-text server log (log4j2 pattern `[%d{ISO8601}][%-5p][%-25c{1.}] %m%n`):
    start-up, index creation, mapping updates, a warning with a stack trace (tab-indented `at` lines),
    GC overhead lines and a few lines that start with `{` or a digit."""
    rng = random.Random(SEED + 5)
    t = datetime(2018, 5, 17, 8, 29, 12, 177000, tzinfo=timezone.utc)
    node = "es-node-1"
    out = []

    def line(level: str, logger: str, msg: str) -> None:
        nonlocal t
        t += timedelta(milliseconds=rng.randint(1, 900))
        stamp = t.strftime("%Y-%m-%dT%H:%M:%S,") + f"{t.microsecond // 1000:03d}"
        out.append(f"[{stamp}][{level:<5}][{logger:<25}] [{node}] {msg}")

    line("INFO", "o.e.n.Node", "initializing ...")
    line("INFO", "o.e.e.NodeEnvironment", "using [1] data paths, mounts [[/ (overlay)]], net usable_space [41.2gb], net total_space [58.4gb], types [overlay]")
    line("INFO", "o.e.e.NodeEnvironment", "heap size [1007.3mb], compressed ordinary object pointers [true]")
    line("INFO", "o.e.n.Node", "version[6.2.4], pid[1], build[ccec39f/2018-04-12T20:37:28.497551Z], OS[Linux/4.9.87-linuxkit-aufs/amd64], JVM[Oracle Corporation/OpenJDK 64-Bit Server VM/1.8.0_161/25.161-b14]")
    for m in ["aggs-matrix-stats", "analysis-common", "ingest-common", "lang-expression", "lang-painless", "mapper-extras", "parent-join", "percolator", "reindex", "repository-url", "transport-netty4"]:
        line("INFO", "o.e.p.PluginsService", f"loaded module [{m}]")
    line("INFO", "o.e.d.DiscoveryModule", "using discovery type [zen]")
    line("INFO", "o.e.n.Node", "initialized")
    line("INFO", "o.e.n.Node", "starting ...")
    line("INFO", "o.e.t.TransportService", "publish_address {172.17.0.2:9300}, bound_addresses {0.0.0.0:9300}")
    line("INFO", "o.e.c.s.MasterService", f"zen-disco-elected-as-master ([0] nodes joined), reason: new_master {{{node}}}{{Wq3pZ1xTQ0mJ2v7kS9d3aA}}{{172.17.0.2}}{{172.17.0.2:9300}}")
    line("INFO", "o.e.h.n.Netty4HttpServerTransport", "publish_address {172.17.0.2:9200}, bound_addresses {0.0.0.0:9200}")
    line("INFO", "o.e.n.Node", "started")
    line("INFO", "o.e.g.GatewayService", "recovered [3] indices into cluster_state")
    for day in range(17, 17 + 8):
        idx = f"logstash-2018.05.{day:02d}"
        line("INFO", "o.e.c.m.MetaDataCreateIndexService", f"[{idx}] creating index, cause [auto(bulk api)], templates [logstash], shards [5]/[1], mappings [_default_, doc]")
        line("INFO", "o.e.c.m.MetaDataMappingService", f"[{idx}/{rng.randrange(16**8):08x}] update_mapping [doc]")
        line("INFO", "o.e.c.r.a.AllocationService", f"Cluster health status changed from [RED] to [YELLOW] (reason: [shards started [[{idx}][{rng.randint(0, 4)}]] ...]).")
    line("WARN", "o.e.m.j.JvmGcMonitorService", "[gc][young][3412][87] duration [1.2s], collections [1]/[1.6s], total [1.2s]/[9.8s], memory [612.4mb]->[318.2mb]/[1007.3mb]")
    line("INFO", "o.e.m.j.JvmGcMonitorService", "[gc][3412] overhead, spent [1.2s] collecting in the last [1.6s]")
    line("WARN", "r.suppressed", "path: /logstash-2018.05.19/doc/_search, params: {index=logstash-2018.05.19, type=doc}")
    out.append("org.elasticsearch.action.search.SearchPhaseExecutionException: all shards failed")
    for frame in ["org.elasticsearch.action.search.AbstractSearchAsyncAction.onPhaseFailure(AbstractSearchAsyncAction.java:274) [elasticsearch-6.2.4.jar:6.2.4]",
                  "org.elasticsearch.action.search.AbstractSearchAsyncAction.executeNextPhase(AbstractSearchAsyncAction.java:132) [elasticsearch-6.2.4.jar:6.2.4]",
                  "org.elasticsearch.action.search.InitialSearchPhase.onShardFailure(InitialSearchPhase.java:105) [elasticsearch-6.2.4.jar:6.2.4]"]:
        out.append("\tat " + frame)
    out.append("Caused by: org.elasticsearch.index.query.QueryShardException: No mapping found for [@timestamp] in order to sort on")
    out.append("\t... 12 more")
    line("DEBUG", "o.e.a.b.TransportShardBulkAction", "[logstash-2018.05.20][2] failed to execute bulk item (index) BulkShardRequest [[logstash-2018.05.20][2]] containing [index {[logstash-2018.05.20][doc][AWN9], source[{\"message\":\"x\",\"@timestamp\":\"bad\"}]}]")
    out.append("{ this line starts with a brace but is a log message, not JSON }")
    out.append("{cluster.name=docker-cluster, node.name=es-node-1}")
    out.append("2018-05-17 08:31:02 a line from another appender that starts with a digit")
    out.append("\"quoted\" free text, then [brackets] and {braces}")
    out.append("[] an empty pair of brackets, then text")
    line("INFO", "o.e.n.Node", "stopping ...")
    line("INFO", "o.e.n.Node", "stopped")
    line("INFO", "o.e.n.Node", "closing ...")
    line("INFO", "o.e.n.Node", "closed")
    return ("\n".join(out) + "\n").encode()


def build_fixtures() -> tuple[dict[str, bytes], dict]:
    files: dict[str, bytes] = {}
    man: dict = {}

    te = list(te_records(1000))
    files["te-process.ndjson.gz"] = gz(ndjson(te))
    by_day: dict[str, int] = {}
    for r in te:
        d = utc_date(datetime.strptime(r["@timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ"))
        by_day[d] = by_day.get(d, 0) + 1
    man["te-process.ndjson.gz"] = {
        "format": "ndjson", "compression": "gzip", "records": 1000, "indexed": 1000, "dead_letter": 0,
        "timestamp_field": "@timestamp", "by_utc_date": by_day,
        "first": te[0]["@timestamp"], "last": te[-1]["@timestamp"],
        "exercises": "realistic sensor payload (52 numeric fields), RFC 3339 ms timestamps crossing UTC midnight",
    }

    logs, by_day = applog_fixture()
    files["app-logs.ndjson.gz"] = gz(ndjson(logs))
    man["app-logs.ndjson.gz"] = {
        "format": "ndjson", "compression": "gzip", "records": 300, "indexed": 300, "dead_letter": 0,
        "timestamp_field": "timestamp (epoch ms number)", "by_utc_date": by_day,
        "dotted_log_level": sum(1 for r in logs if "log.level" in r),
        "login_events": sum(1 for r in logs if r.get("event") == "login"),
        "exercises": "epoch-ms timestamps, nested http object, dotted 'log.level' keys, string 'event' field",
    }

    rng = random.Random(SEED + 2)
    cw = cloudwatch_members(rng)
    files["cloudwatch-logs.json.gz"] = b"".join(gz(json.dumps(m, separators=(",", ":")).encode()) for m in cw)
    data_events = sum(len(m["logEvents"]) for m in cw if m["messageType"] == "DATA_MESSAGE")
    by_day = {}
    for m in cw:
        if m["messageType"] == "DATA_MESSAGE":
            for e in m["logEvents"]:
                d = utc_date(datetime.fromtimestamp(e["timestamp"] / 1000, tz=timezone.utc))
                by_day[d] = by_day.get(d, 0) + 1
    man["cloudwatch-logs.json.gz"] = {
        "format": "concatenated JSON (CloudWatch Logs subscription)", "compression": "gzip, one member per payload",
        "records": len(cw), "gzip_members": len(cw), "data_messages": len(cw) - 1, "control_messages": 1,
        "indexed": data_events, "dead_letter": 0, "timestamp_field": "logEvents[].timestamp (epoch ms)",
        "by_utc_date": by_day,
        "exercises": "CWL envelope unpacking: one document per DATA_MESSAGE logEvent, CONTROL_MESSAGE skipped, multi-member gzip",
    }

    rng = random.Random(SEED + 3)
    objs = [{"id": i, "kind": "concat", "value": round(rng.uniform(-100, 100), 3), "tags": ["a", "b"][: i % 3]} for i in range(50)]
    files["concatenated.json.gz"] = gz(b"".join(json.dumps(o, separators=(",", ":")).encode() for o in objs))
    man["concatenated.json.gz"] = {
        "format": "concatenated JSON, no separator", "compression": "gzip", "records": 50, "indexed": 50, "dead_letter": 0,
        "timestamp_field": None, "exercises": "'}{' boundaries without newlines (Firehose without a newline delimiter)",
    }

    recs = [{"id": i, "member": i // 10, "msg": f"record {i} of member {i // 10}"} for i in range(30)]
    files["multi-member.ndjson.gz"] = b"".join(gz(ndjson(recs[m * 10 : m * 10 + 10])) for m in range(3))
    man["multi-member.ndjson.gz"] = {
        "format": "ndjson", "compression": "gzip, 3 members of 10 records", "records": 30, "indexed": 30, "dead_letter": 0,
        "timestamp_field": None, "exercises": "multi-member gzip (a single-member decoder stops after 10 records)",
    }

    arr = [{"id": i, "name": f"item-{i}", "price": round(1.5 * i + 0.99, 2), "in_stock": i % 4 != 0} for i in range(20)]
    files["array.json"] = json.dumps(arr, indent=2).encode() + b"\n"
    man["array.json"] = {
        "format": "top-level JSON array", "compression": "none", "records": 20, "indexed": 20, "dead_letter": 0,
        "timestamp_field": None, "exercises": "uncompressed body, array elements become documents",
    }

    lines = [ndjson([{"id": i, "msg": f"plain record {i}"}]) for i in range(18)]
    lines.insert(5, b"2026-11-24 10:15:02,123 INFO  plain text line that is not JSON\n")
    lines.insert(13, b"WARN disk usage at 91% on /var/lib/data\n")
    files["plain.ndjson"] = b"".join(lines)
    man["plain.ndjson"] = {
        "format": "ndjson", "compression": "none", "records": 20, "json_lines": 18, "text_lines": 2,
        "indexed": 20, "dead_letter": 0, "timestamp_field": None,
        "exercises": "uncompressed body; non-JSON text lines become {\"message\": line}",
    }

    files["elasticsearch.log"] = elasticsearch_log()
    es_lines = [l for l in files["elasticsearch.log"].decode().split("\n") if l.strip()]
    man["elasticsearch.log"] = {
        "format": "text lines (Elasticsearch's plain-text server log)", "compression": "none",
        "records": len(es_lines), "indexed": len(es_lines), "dead_letter": 0,
        "lines_starting_with_bracket": sum(l.startswith("[") for l in es_lines),
        "lines_starting_with_brace": sum(l.startswith("{") for l in es_lines),
        "timestamp_field": None,
        "exercises": "text lines starting with '[' (and '{', tabs, digits) are one {\"message\": line} document each, "
        "exactly as written; the first byte '[' must not make the object a top-level JSON array",
    }

    good = [{"id": i, "ok": True} for i in range(15)]
    body = ndjson(good[:10]) + b'{"a": 1, "b":\n' + b'{"id": "bad-utf8", "msg": "caf\xe9 \xff\xfe latin-1 bytes"}\n' + ndjson(good[10:])
    files["malformed.ndjson.gz"] = gz(body)
    man["malformed.ndjson.gz"] = {
        "format": "ndjson", "compression": "gzip", "records": 17, "indexed": 15, "dead_letter": 2,
        "bad_lines": [11, 12], "timestamp_field": None,
        "exercises": "line 11 is truncated JSON ({\"a\": 1, \"b\":), line 12 has invalid UTF-8; both dead-lettered, the rest indexed",
    }

    rng = random.Random(SEED + 4)
    recs = [{"id": i, "payload": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(60))} for i in range(50)]
    cut, complete = truncate_mid_record(gz(ndjson(recs)))
    files["truncated.ndjson.gz"] = cut
    man["truncated.ndjson.gz"] = {
        "format": "ndjson", "compression": "gzip, cut mid-stream (no trailer)", "records": 50,
        "complete_records_before_cut": complete, "indexed": complete, "dead_letter": 1, "timestamp_field": None,
        "exercises": "unexpected EOF in the gzip stream: complete records before the cut are indexed, "
        "the partial last line plus the decode error are one dead-letter entry",
    }

    manifest = {
        "generator": "scripts/gen_fixtures.py",
        "seed": SEED,
        "assumptions": [
            "indexed = documents expected in the data indices; dead_letter = entries expected in the dead-letter index",
            "a line that is not JSON (does not start with '{' or '[') becomes the document {\"message\": line}",
            "a JSON-looking record that does not parse (truncated) is one dead-letter entry",
            "a line with invalid UTF-8 is one dead-letter entry",
            "CloudWatch Logs: each DATA_MESSAGE logEvent is one document; CONTROL_MESSAGE is skipped (neither indexed nor dead-lettered)",
            "truncated gzip: complete records before the cut are indexed, plus exactly one dead-letter entry for the "
            "truncated stream (the partial last line is part of that entry, not a separate one)",
            "by_utc_date keys are the UTC day of each record's timestamp (index f4a-YYYY.MM.DD)",
        ],
        "fixtures": man,
    }
    return files, manifest


# The compressed fixtures (issue 15) are decoded by the worker, so they are entries of "fixtures"
# like the others: tests/e2e.rs `every_fixture_format` and tests/formats.rs index every entry.
COMPRESSED_SECTION = "fixtures"
COMPRESSED_ASSUMPTIONS = [
    "compressed_fixtures hold the same 300 records as app-logs.ndjson.gz, packed by zstd, pzstd, zip and python-snappy",
    "the format is found from the content (magic bytes or framing), never from the key suffix",
    "a truncated or corrupt compressed object: the complete records decoded before the damage are indexed, plus "
    "exactly one dead-letter entry for the rest",
    "ZIP: entries are object parts in file order; directory entries hold no records; methods 0 (stored) and 8 "
    "(deflate) are decoded, an entry with any other method or encrypted is one dead-letter entry and the reader "
    "goes on with the next entry",
]


def add_compressed(files: dict[str, bytes], manifest: dict, check: bool, skip: bool) -> list[str]:
    """Add the compressed fixtures and their manifest section; returns the files that do not verify."""
    if skip:  # keep the committed files and their section as they are
        try:
            with open(os.path.join(FIXTURES, "manifest.json")) as f:
                old = json.load(f)
        except FileNotFoundError:
            return []
        section = {k: v for k, v in old.get(COMPRESSED_SECTION, {}).items() if k not in manifest["fixtures"]}
        entries, problems = section, []
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import gen_compressed_fixtures as gcf

        tools = gcf.tool_versions()  # exits naming what to install
        print("compressed fixtures with " + ", ".join(f"{k} {v}" for k, v in tools.items()), file=sys.stderr)
        logs, by_day = applog_fixture()
        cfiles, entries, problems = gcf.build(FIXTURES, ndjson(logs), by_day, check)
        files.update(cfiles)
    if COMPRESSED_SECTION == "fixtures":
        manifest["fixtures"].update(entries)
        manifest["assumptions"] += COMPRESSED_ASSUMPTIONS
    else:
        manifest[COMPRESSED_SECTION] = entries
        manifest["compressed_assumptions"] = COMPRESSED_ASSUMPTIONS
    return problems


def write_fixtures(check: bool, skip_compressed: bool = False) -> int:
    files, manifest = build_fixtures()
    stale = add_compressed(files, manifest, check, skip_compressed)
    files["manifest.json"] = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
    os.makedirs(FIXTURES, exist_ok=True)
    for name, data in sorted(files.items()):
        path = os.path.join(FIXTURES, name)
        assert len(data) < 200_000, f"{name} too big: {len(data)}"
        if check:
            try:
                with open(path, "rb") as f:
                    if f.read() != data:
                        stale.append(name)
            except FileNotFoundError:
                stale.append(name)
            continue
        with open(path, "wb") as f:
            f.write(data)
        print(f"{name:<28} {len(data):>7} bytes", file=sys.stderr)
    if stale:
        print(f"stale fixtures (run scripts/gen_fixtures.py): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


def write_large(kind: str, n: int, out: str, compress: bool, seed: int) -> None:
    """Streamed so that millions of records need no memory."""
    if kind == "te":
        gen = te_records(n, seed=seed)
    elif kind == "applog":
        gen = applog_records(n, seed=seed)
    else:
        gen = mixed_records(n, seed=seed)
    raw = open(out, "wb")
    f = gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="", compresslevel=6) if compress else raw
    with raw:
        batch = []
        for rec in gen:
            batch.append(rec)
            if len(batch) == 10_000:
                f.write(ndjson(batch))
                batch.clear()
        f.write(ndjson(batch))
        if compress:
            f.close()
    print(f"wrote {n} {kind} records to {out} ({os.path.getsize(out)} bytes)", file=sys.stderr)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="verify fixtures/ is up to date, write nothing")
    p.add_argument("--skip-compressed", action="store_true",
                   help="leave the zstd/ZIP/Snappy fixtures and their manifest section as they are "
                        "(no zstd, zip or python-snappy needed)")
    p.add_argument("--records", type=int, help="generate one large file of N records instead of fixtures/")
    p.add_argument("--kind", choices=["te", "applog", "mixed"], default="te")
    p.add_argument("--out", help="output file for --records")
    p.add_argument("--gzip", action="store_true", help="gzip the --records output")
    p.add_argument("--seed", type=int, default=SEED)
    a = p.parse_args()
    if a.records is not None:
        if not a.out:
            p.error("--records needs --out")
        write_large(a.kind, a.records, a.out, a.gzip, a.seed)
        return 0
    return write_fixtures(a.check, a.skip_compressed)


if __name__ == "__main__":
    sys.exit(main())
