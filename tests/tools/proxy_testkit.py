"""Helpers and fixtures for the self-tests of the SigV4 proxy and the ECS credentials endpoint: a
tiny local upstream that records what reached it, a botocore-based client signer, raw HTTP sends.

Not a conftest.py on purpose: tests/deploy imports names `from conftest`, and two conftest
modules in one pytest run would shadow each other. The test modules import from here.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import os
import sys
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402

import sigv4_proxy  # noqa: E402
from sigv4_verify import AMZ_DATE, Key, KeyStore, write_keys_file  # noqa: E402

TEMP_KEY = Key("ASIATESTTEMPORARY001", "tempSecret/K7MDENG+bPxRfiCYEXAMPLEKEY", "FwoGZXIvYXdzEXAMPLETOKEN+/==")
LONG_KEY = Key("AKIATESTLONGTERM0001", "longSecret/K7MDENG+bPxRfiCYEXAMPLEKEY")


class Upstream(ThreadingHTTPServer):
    """Answers like a search node just enough for the proxy tests, and records every request."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _UpstreamHandler)
        self.seen: list[dict] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        self.server.seen.append({"method": self.command, "target": self.path, "headers": dict(self.headers.items()),
                                 "body": body})
        path = self.path.split("?")[0]
        if path.endswith("/_bulk"):
            plain = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
            items = []
            lines = [ln for ln in plain.split(b"\n") if ln.strip()]
            i = 0
            while i < len(lines):
                op, meta = next(iter(json.loads(lines[i]).items()))
                items.append({op: {"_index": meta.get("_index", "x"), "_id": meta.get("_id", f"auto{i}"), "status": 201}})
                i += 1 if op == "delete" else 2
            doc = {"took": 3, "errors": False, "items": items}
        elif path == "/":
            doc = {"name": "upstream", "version": {"distribution": "opensearch", "number": "2.19.0"}}
        else:
            doc = {"acknowledged": True, "path": path}
        out = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any


@pytest.fixture
def upstream():
    srv = Upstream()
    threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def keys_file(tmp_path):
    path = str(tmp_path / "keys.json")
    write_keys_file(path, [TEMP_KEY, LONG_KEY])
    return path


@pytest.fixture
def make_proxy(upstream, keys_file):
    started = []

    def make(**kw):
        p = sigv4_proxy.start(upstream.url, KeyStore(keys_file), poll_interval=0.02, **kw)
        started.append(p)
        return p

    yield make
    for p in started:
        p.shutdown()
        p.server_close()


def now_amz() -> str:
    return datetime.now(timezone.utc).strftime(AMZ_DATE)


def sign(host: str, method: str, path: str, params=(), body: bytes = b"", headers=(), *, key: Key = TEMP_KEY,
         service="es", region="us-east-1", amz_date: str | None = None, content_sha: str | None | bool = True,
         signer_cls=SigV4Auth, with_token: bool = True) -> tuple[str, list[tuple[str, str]]]:
    """Sign like an AWS SDK does (botocore), for `host`; returns (wire target, headers to send)."""
    params = list(params)
    req = AWSRequest(method=method, url=f"http://{host}{path}", data=body, params=params)
    req.headers["Host"] = host
    for n, v in headers:
        req.headers[n] = v
    if content_sha is True:
        req.headers["X-Amz-Content-SHA256"] = hashlib.sha256(body).hexdigest()
    elif content_sha:
        req.headers["X-Amz-Content-SHA256"] = content_sha
    auth = signer_cls(Credentials(key.access_key_id, key.secret_access_key, key.token if with_token else None),
                      service, region)
    req.context["timestamp"] = amz_date or now_amz()
    auth._modify_request_before_signing(req)
    cr = auth.canonical_request(req)
    auth._inject_signature_to_request(req, auth.signature(auth.string_to_sign(req, cr), req))
    target = path + ("?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params) if params else "")
    return target, list(req.headers.items())


def send(url: str, method: str, target: str, headers=(), body: bytes = b"", *, content_length=True, chunked=False):
    """Raw HTTP/1.1: exactly these headers (no Host or Accept-Encoding added), exactly this body."""
    host, port = url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
    for n, v in headers:
        conn.putheader(n, v)
    if chunked:
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for i in range(0, len(body), 7):
            piece = body[i:i + 7]
            conn.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        conn.send(b"0\r\n\r\n")
    else:
        if content_length:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
    resp = conn.getresponse()
    out = resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    conn.close()
    return out


def call(proxy, method, path, params=(), body=b"", headers=(), **sign_kw):
    """Sign for the proxy's own host:port and send."""
    host = f"127.0.0.1:{proxy.server_address[1]}"
    target, hdrs = sign(host, method, path, params, body, headers, **sign_kw)
    return send(proxy.url, method, target, hdrs, body)


def stats(proxy) -> dict:
    return json.loads(send(proxy.url, "GET", "/__proxy/stats")[2])
