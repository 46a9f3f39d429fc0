#!/usr/bin/env python3
"""A counting stand-in for the search cluster, for benchmarks (stdlib only).

    scripts/bench_sink.py --port 9299 [--out events.json] [--save bodies.ndjson]

- `POST /_bulk`: reads the NDJSON body (gunzipped first when sent with `Content-Encoding: gzip`,
  the worker's default `ES_COMPRESSION`), counts documents (lines / 2), answers
  `{"took":1,"errors":false}` (the worker sends `filter_path`, and reads "no errors, no items"
  as every document accepted). Nothing is stored, unless `--save FILE`: then every bulk body
  is appended to FILE, decompressed (the concatenation is itself a bulk body: the worker's
  documents, action lines included, which `make bench` replays against a real node).
- `GET /` (the worker's readiness probe): a small cluster-info JSON.
- `GET /_bench/stats`: every bulk request so far as `[unix_time, docs, bytes, wire_bytes]` (bytes
  of the NDJSON body; bytes as received, compressed or not), plus totals.
- `POST /_bench/reset`: forget them.
On SIGTERM/SIGINT the events are written to `--out` (if given) before exiting.
"""

from __future__ import annotations

import argparse
import gzip
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
EVENTS: list[list[float]] = []  # [t, docs, bytes, wire_bytes]
INFO = json.dumps(
    {"name": "bench-sink", "cluster_name": "bench", "version": {"number": "8.15.0"}, "tagline": "You Know, for Search"}
).encode()
BULK_OK = b'{"took":1,"errors":false}'
SAVE = None  # the --save file, open for appending


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real cluster

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_POST(self) -> None:
        wire = self._body()
        path = self.path.split("?")[0]
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                body = gzip.decompress(wire)
            except (OSError, EOFError) as e:
                self._reply(400, json.dumps({"error": f"bad gzip body: {e}"}).encode())
                return
        else:
            body = wire
        if path.endswith("/_bulk"):
            docs = body.count(b"\n") // 2
            with LOCK:
                EVENTS.append([time.time(), docs, len(body), len(wire)])
                if SAVE is not None:
                    SAVE.write(body if body.endswith(b"\n") else body + b"\n")
            self._reply(200, BULK_OK)
        elif path == "/_bench/reset":
            with LOCK:
                EVENTS.clear()
            self._reply(200, b"{}")
        else:
            self._reply(200, b"{}")

    do_PUT = do_POST

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/_bench/stats":
            with LOCK:
                events = list(EVENTS)
            body = json.dumps(
                {
                    "requests": len(events),
                    "docs": sum(e[1] for e in events),
                    "bytes": sum(e[2] for e in events),
                    "wire_bytes": sum(e[3] for e in events),
                    "events": events,
                }
            ).encode()
            self._reply(200, body)
        elif path == "/":
            self._reply(200, INFO)
        else:
            self._reply(200, b"{}")

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9299)
    p.add_argument("--out", help="write the events here on exit")
    p.add_argument("--save", help="append every bulk body to this file")
    a = p.parse_args()
    global SAVE
    if a.save:
        SAVE = open(a.save, "ab")
    server = ThreadingHTTPServer((a.host, a.port), Handler)
    server.daemon_threads = True

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"bench sink on http://{a.host}:{server.server_address[1]}", file=sys.stderr, flush=True)
    server.serve_forever(poll_interval=0.5)
    if SAVE is not None:
        with LOCK:
            SAVE.close()
    if a.out:
        with LOCK, open(a.out, "w") as f:
            json.dump(EVENTS, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
