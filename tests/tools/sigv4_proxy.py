#!/usr/bin/env python3
"""A SigV4-verifying reverse proxy in front of a search node, standing in for Amazon OpenSearch
Service (`--service es`) or OpenSearch Serverless (`--service aoss`) in tests.

Every request is verified by sigv4_verify.Verifier (botocore recomputing the signature from the
secret the proxy knows); a bad one gets AWS's 403 with a JSON body and an `x-f4a-proxy-reason`
header, a good one is forwarded to the upstream byte for byte (the body is never decompressed on
the way: the engine gets the gzip the worker sent). In `aoss` mode aoss.Serverless answers what
Serverless answers differently. The proxy owns the HTTP side and the counters.

    tests/tools/sigv4_proxy.py --upstream http://127.0.0.1:9200 --credentials /tmp/keys.json \
        [--listen 127.0.0.1:0] [--service es|aoss] [--region us-east-1] \
        [--collection-type search|timeseries|vector] [--max-skew 300] \
        [--forbid-signed-header content-length ...] [--ignore-filter-path] [--port-file F]

It prints one JSON line (`{"proxy": "http://127.0.0.1:PORT", ...}`) once it listens. Control
endpoints (never signed, never forwarded; index names cannot start with `_`):

    GET  /__proxy/stats    counters (see Stats.snapshot)
    POST /__proxy/reset    zero the counters
    POST /__proxy/config   {"expire_next": N}: the next N valid requests get the expired-token 403;
                           {"collection_type": "timeseries"}: switch the Serverless collection type
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from aoss import COLLECTION_TYPES, SEARCH, Serverless
from sigv4_verify import HOP_BY_HOP, MSG_EXPIRED_TOKEN, KeyStore, Rejection, Verified, Verifier

NOT_FORWARDED = HOP_BY_HOP | {"host", "authorization", "x-amz-security-token", "content-length", "expect"}


class Stats:
    def __init__(self):
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self.c = collections.Counter()
            self.by_reason = collections.Counter()
            self.by_key = collections.Counter()
            self.by_encoding = collections.Counter()
            self.upstream_status = collections.Counter()
            self.endpoints = collections.Counter()
            self.last_rejections = collections.deque(maxlen=20)
            self._seen = collections.OrderedDict()

    def request(self, nbytes: int, chunked: bool) -> None:
        with self._lock:
            self.c["requests"] += 1
            self.c["bytes_in"] += nbytes
            self.c["chunked"] += chunked

    def rejected(self, rej: Rejection, method: str, path: str) -> None:
        with self._lock:
            self.c["rejected"] += 1
            self.by_reason[rej.reason] += 1
            self.last_rejections.append({"at": time.time(), "reason": rej.reason, "method": method,
                                         "path": path, "detail": rej.detail})

    def accepted(self, ok: Verified, nbytes: int, encoding: str, method: str, path: str) -> None:
        with self._lock:
            self.c["accepted"] += 1
            self.c["bytes_in_accepted"] += nbytes
            self.by_key[ok.access_key_id] += 1
            self.by_encoding[encoding or "identity"] += 1
            self.endpoints[f"{method} {_endpoint(path)}"] += 1
            if ok.signature in self._seen:
                self.c["replayed_signatures"] += 1
            self._seen[ok.signature] = None
            if len(self._seen) > 50_000:
                self._seen.popitem(last=False)

    def bump(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.c[key] += n

    def upstream(self, status: int) -> None:
        with self._lock:
            self.c["forwarded"] += 1
            self.upstream_status[str(status)] += 1

    def snapshot(self, serverless: Serverless | None, keys: KeyStore) -> dict:
        with self._lock:
            out = {k: self.c[k] for k in ("requests", "accepted", "rejected", "forwarded", "bytes_in",
                                           "bytes_in_accepted", "chunked", "replayed_signatures",
                                           "upstream_errors", "faults_injected")}
            out.update(rejected_by_reason=dict(self.by_reason), access_keys=dict(self.by_key),
                       content_encoding=dict(self.by_encoding), upstream_status=dict(self.upstream_status),
                       endpoints=dict(self.endpoints), last_rejections=list(self.last_rejections),
                       credentials_file_errors=keys.file_errors)
        if serverless is not None:
            out["aoss"] = dict(serverless.stats, collection_type=serverless.collection_type)
        return out


def _endpoint(path: str) -> str:
    """`/f4a-2026.11.24/_doc/x` -> `/{index}/_doc/{id}`: endpoint counts that stay few."""
    parts = [p for p in path.split("/") if p]
    out = []
    for i, p in enumerate(parts):
        if p.startswith("_"):
            out.append(p)
        else:
            out.append("{index}" if i == 0 else "{id}")
    return "/" + "/".join(out)


class Proxy(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, listen: tuple[str, int], upstream: str, verifier: Verifier,
                 serverless: Serverless | None = None, ignore_filter_path: bool = False, verbose: bool = False):
        super().__init__(listen, Handler)
        u = urlsplit(upstream)
        self.upstream = (u.hostname or "127.0.0.1", u.port or 80)
        self.verifier = verifier
        self.serverless = serverless
        self.ignore_filter_path = ignore_filter_path
        self.verbose = verbose
        self.stats = Stats()
        self.expire_next = 0
        self._local = threading.local()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{self.server_address[0]}:{self.server_address[1]}"

    def take_expire_fault(self) -> bool:
        with self._lock:
            if self.expire_next > 0:
                self.expire_next -= 1
                return True
            return False

    def forward(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes):
        """Send to the upstream on this thread's keep-alive connection (one retry on a stale one)."""
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(*self.upstream, timeout=120)
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", f"{self.upstream[0]}:{self.upstream[1]}")
                for name, value in headers:
                    conn.putheader(name, value)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Proxy

    def version_string(self) -> str:
        return "aoss-amazon" if self.server.serverless else "f4a-sigv4-proxy"

    def log_message(self, fmt, *args) -> None:
        if self.server.verbose:
            sys.stderr.write("[sigv4-proxy] " + fmt % args + "\n")

    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_OPTIONS = do_GET

    # ---------------------------------------------------------------- plumbing

    def _read_body(self) -> tuple[bytes, bool]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks), True
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return (self.rfile.read(n) if n else b""), False

    def _send(self, status: int, body: bytes = b"", headers: list[tuple[str, str]] = (), content_type=None):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, doc, headers=()) -> None:
        self._send(status, json.dumps(doc, indent=1).encode(), headers, "application/json")

    def _reject(self, rej: Rejection, method: str, path: str) -> None:
        self.server.stats.rejected(rej, method, path)
        self.log_message("403 %s %s: %s (%s)", method, path, rej.reason, rej.detail)
        self._json(rej.status, {"message": rej.message},
                   [("x-amzn-RequestId", str(uuid.uuid4())), ("x-f4a-proxy-reason", rej.reason),
                    ("x-f4a-proxy-detail", rej.detail.encode("ascii", "replace").decode()[:400])])

    # ---------------------------------------------------------------- control endpoints

    def _control(self, method: str, path: str, body: bytes) -> None:
        srv = self.server
        if method == "GET" and path == "/__proxy/stats":
            return self._json(200, srv.stats.snapshot(srv.serverless, srv.verifier.keys))
        if method == "POST" and path == "/__proxy/reset":
            srv.stats.reset()
            if srv.serverless:
                for k in srv.serverless.stats:
                    srv.serverless.stats[k] = 0
            return self._json(200, {"reset": True})
        if method == "POST" and path == "/__proxy/config":
            try:
                cfg = json.loads(body or b"{}")
                if "expire_next" in cfg:
                    with srv._lock:
                        srv.expire_next = int(cfg["expire_next"])
                if "collection_type" in cfg:
                    if not srv.serverless or cfg["collection_type"] not in COLLECTION_TYPES:
                        raise ValueError("collection_type needs --service aoss and one of " + ", ".join(COLLECTION_TYPES))
                    srv.serverless.collection_type = cfg["collection_type"]
            except (ValueError, TypeError) as e:
                return self._json(400, {"error": str(e)})
            return self._json(200, {"expire_next": srv.expire_next,
                                    "collection_type": srv.serverless.collection_type if srv.serverless else None})
        return self._json(404, {"error": f"no control endpoint {method} {path}"})

    # ---------------------------------------------------------------- the request path

    def _handle(self) -> None:
        srv = self.server
        # The target exactly as sent: http.server rewrites a leading "//" in self.path.
        method, target = self.command, self.requestline.split(" ")[1]
        path, _, query = target.partition("?")
        body, chunked = self._read_body()
        if path.startswith("/__proxy/"):
            return self._control(method, path, body)
        srv.stats.request(len(body), chunked)
        headers = list(self.headers.items())
        result = srv.verifier.verify(method, target, headers, body)
        if isinstance(result, Rejection):
            return self._reject(result, method, path)
        if srv.take_expire_fault():
            srv.stats.bump("faults_injected")
            return self._reject(Rejection("expired_token", MSG_EXPIRED_TOKEN, "injected by /__proxy/config"), method, path)
        encoding = self.headers.get("Content-Encoding", "")
        srv.stats.accepted(result, len(body), encoding, method, path)

        fwd_headers = [(n, v) for n, v in headers if n.lower() not in NOT_FORWARDED]
        plan = None
        if srv.serverless:
            canned = srv.serverless.answer(method, path, query)
            if canned is not None:
                return self._send(canned.status, canned.body, [("x-request-id", str(uuid.uuid4()))], canned.content_type)
            plan = srv.serverless.plan_bulk(path, {n.lower(): v for n, v in headers}, body)
        if srv.ignore_filter_path or plan:
            kept = [p for p in query.split("&") if p and not p.startswith("filter_path=")]
            target = path + ("?" + "&".join(kept) if kept else "")
        if plan:
            if plan.forward_body is None:
                return self._send(200, plan.merge(None), content_type="application/json; charset=UTF-8")
            # The rewritten body is plain NDJSON and the merged answer plain JSON.
            fwd_headers = [(n, v) for n, v in fwd_headers if n.lower() not in ("content-encoding", "accept-encoding")]
            body = plan.forward_body
        try:
            status, up_headers, up_body = srv.forward(method, target, fwd_headers, body)
        except (http.client.HTTPException, OSError) as e:
            srv.stats.bump("upstream_errors")
            return self._json(502, {"message": f"upstream {srv.upstream[0]}:{srv.upstream[1]} failed: {e}"})
        srv.stats.upstream(status)
        if plan and status == 200:
            up_body = plan.merge(up_body)
        dropped = HOP_BY_HOP | {"content-length", "server", "date"} | ({"content-encoding"} if plan else set())
        relay = [(n, v) for n, v in up_headers if n.lower() not in dropped]
        if method == "HEAD":  # keep the engine's length for a HEAD: no body follows
            length = next((v for n, v in up_headers if n.lower() == "content-length"), "0")
            self.send_response(status)
            for n, v in relay:
                self.send_header(n, v)
            self.send_header("Content-Length", length)
            self.end_headers()
            return
        self._send(status, up_body, relay)


def start(upstream: str, keys: KeyStore, *, listen=("127.0.0.1", 0), service="es", region="us-east-1",
          collection_type=SEARCH, max_skew=300, forbid_signed=(), require_content_sha256=True,
          ignore_filter_path=False, verbose=False, clock=None, poll_interval=0.5, host_aliases=()) -> Proxy:
    """Start a proxy on a daemon thread (for in-process tests); `proxy.shutdown()` stops it."""
    forbid = HOP_BY_HOP | {h.lower() for h in forbid_signed}
    if service == "aoss":
        forbid |= {"content-length"}  # Serverless refuses a signed content-length (opensearch-js #356)
    up = urlsplit(upstream)
    aliases = (f"{up.hostname}:{up.port}" if up.port else up.hostname, *host_aliases)
    verifier = Verifier(keys, service, region, max_skew=max_skew, require_content_sha256=require_content_sha256,
                        forbid_signed=frozenset(forbid), host_aliases=aliases, clock=clock)
    proxy = Proxy(listen, upstream, verifier, Serverless(collection_type) if service == "aoss" else None,
                  ignore_filter_path, verbose)
    threading.Thread(target=proxy.serve_forever, args=(poll_interval,), name="sigv4-proxy", daemon=True).start()
    return proxy


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", required=True, help="search node URL, e.g. http://127.0.0.1:9200")
    p.add_argument("--credentials", required=True, help="JSON file of valid credentials, re-read when it changes")
    p.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: pick one)")
    p.add_argument("--service", choices=["es", "aoss"], default="es")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--collection-type", choices=COLLECTION_TYPES, default=SEARCH, help="aoss only")
    p.add_argument("--max-skew", type=int, default=300, help="seconds of X-Amz-Date skew accepted (AWS: 300)")
    p.add_argument("--forbid-signed-header", action="append", default=[], metavar="NAME",
                   help="refuse requests that sign this header (hop-by-hop ones always; aoss: content-length)")
    p.add_argument("--allow-missing-content-sha256", action="store_true",
                   help="accept requests without x-amz-content-sha256 (Amazon OpenSearch Service does)")
    p.add_argument("--ignore-filter-path", action="store_true",
                   help="drop filter_path before forwarding, as AWS does for some signed POSTs")
    p.add_argument("--host-alias", action="append", default=[], metavar="HOST[:PORT]",
                   help="a host a wrong client might sign instead of the Host it sends (named in the refusal; "
                        "the upstream's is tried anyway), e.g. search-x.us-east-1.es.amazonaws.com")
    p.add_argument("--port-file", help="write the chosen port here")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    a = p.parse_args(argv)
    host, _, port = a.listen.rpartition(":")
    proxy = start(a.upstream, KeyStore(a.credentials), listen=(host or "127.0.0.1", int(port)), service=a.service,
                  region=a.region, collection_type=a.collection_type, max_skew=a.max_skew,
                  forbid_signed=a.forbid_signed_header, require_content_sha256=not a.allow_missing_content_sha256,
                  ignore_filter_path=a.ignore_filter_path, verbose=a.verbose, host_aliases=a.host_alias)
    if a.port_file:
        with open(a.port_file, "w") as f:
            f.write(str(proxy.server_address[1]))
    print(json.dumps({"proxy": proxy.url, "upstream": a.upstream, "service": a.service, "region": a.region,
                      "collection_type": a.collection_type if a.service == "aoss" else None}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
