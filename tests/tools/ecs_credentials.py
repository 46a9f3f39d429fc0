#!/usr/bin/env python3
"""An ECS-style container credentials endpoint (what `AWS_CONTAINER_CREDENTIALS_FULL_URI` points
at on Fargate) that rotates short-lived credentials, for tests of credential refresh.

It serves the task-role JSON in the exact shape ECS uses:

    {"AccessKeyId": "ASIA…", "Expiration": "2026-11-24T10:01:20Z", "RoleArn": "arn:aws:iam::…:role/…",
     "SecretAccessKey": "…", "Token": "…"}

A new set is issued every `--rotate-every` seconds; each set expires `--grace` seconds after the
next one is issued (real STS/ECS overlap: the old set stays valid until its own Expiration, and a
new one is available before that). Every set ever issued (up to 100) is written to `--keys-file`,
the file sigv4_proxy.py reads, so the proxy answers "expired" (not "invalid") to a client that
keeps an old set. With `--auth-token`, the Authorization header must carry it
(`AWS_CONTAINER_AUTHORIZATION_TOKEN`).

    tests/tools/ecs_credentials.py --keys-file /tmp/keys.json [--rotate-every 60] [--grace 20] \
        [--listen 127.0.0.1:0] [--control-listen 127.0.0.1:0] [--path /v2/credentials/f4a-task] \
        [--auth-token TOKEN] [--port-file F]

It prints one JSON line: {"credentials_uri": ..., "control": ..., "keys_file": ...}. The control
server (its own port, so "down" can really refuse connections on the credentials port):

    GET  /__control/stats     {"fetches", "served", "auth_failures", "errors_served", "not_found", "rotations",
                               "mode", "current": {AccessKeyId, Expiration}, "fetches_by_key"}
                              (fetches counts every request that reached the port, whatever the answer)
    POST /__control/mode      {"mode": "up" | "down" (connection refused; a connection kept alive from
                              before is closed unanswered, counted in "cut_while_down") | "error" (500) | "hang" (no answer)}
    POST /__control/rotate    issue a new set now
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import secrets
import socket
import string
import sys
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sigv4_verify import Key, format_time, write_keys_file

ROLE_ARN = "arn:aws:iam::000000000000:role/f4a-indexer-task"
MODES = ("up", "down", "error", "hang")


def new_key(lifetime: float) -> Key:
    upper = string.ascii_uppercase + string.digits
    return Key(
        access_key_id="ASIA" + "".join(secrets.choice(upper) for _ in range(16)),
        secret_access_key=secrets.token_urlsafe(30)[:40],
        # Real session tokens are several hundred bytes of base64: exercise long header values.
        token="IQoJb3JpZ2luX2Vj" + secrets.token_urlsafe(600).replace("-", "+").replace("_", "/"),
        # Whole seconds, as ECS writes them; rounded up so a set never lives shorter than asked.
        expiration=datetime.fromtimestamp(math.ceil(time.time() + lifetime), timezone.utc),
    )


class Endpoint:
    def __init__(self, keys_file: str, rotate_every: float = 60, grace: float = 20, *,
                 listen=("127.0.0.1", 0), control_listen=("127.0.0.1", 0), path="/v2/credentials/f4a-task",
                 auth_token: str | None = None):
        self.keys_file = keys_file
        self.rotate_every = rotate_every
        self.grace = grace
        self.path = path
        self.auth_token = auth_token
        self.mode = "up"
        self.lock = threading.Lock()
        self.mode_changed = threading.Condition(self.lock)
        self.issued: collections.deque[Key] = collections.deque(maxlen=100)
        self.c = collections.Counter()
        self.by_key = collections.Counter()
        self._stop = threading.Event()
        self.rotate()
        self._listen = listen
        self.creds_server = self._serve(listen, _CredsHandler)
        self.port = self.creds_server.server_address[1]
        self.control_server = self._serve(control_listen, _ControlHandler)
        threading.Thread(target=self._rotator, name="ecs-rotator", daemon=True).start()

    # ---------------------------------------------------------------- state

    def rotate(self) -> Key:
        key = new_key(self.rotate_every + self.grace)
        with self.lock:
            self.issued.append(key)
            self.c["rotations"] += 1
            write_keys_file(self.keys_file, list(self.issued))
        return key

    def current(self) -> Key:
        with self.lock:
            return self.issued[-1]

    def _rotator(self) -> None:
        next_at = time.monotonic() + self.rotate_every
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            self.rotate()
            next_at += self.rotate_every

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        with self.lock:
            old, self.mode = self.mode, mode
            self.mode_changed.notify_all()
        if mode == "down" and old != "down":
            self.creds_server.shutdown()
            self.creds_server.server_close()  # the port now refuses connections
        elif mode != "down" and old == "down":
            self.creds_server = self._serve((self._listen[0], self.port), _CredsHandler)

    def _serve(self, addr, handler) -> ThreadingHTTPServer:
        srv = ThreadingHTTPServer(addr, handler)
        srv.daemon_threads = True
        srv.endpoint = self
        threading.Thread(target=srv.serve_forever, args=(0.05,), name="ecs-endpoint", daemon=True).start()
        return srv

    def stats(self) -> dict:
        cur = self.current()
        with self.lock:
            return {**{k: self.c[k] for k in ("fetches", "served", "auth_failures", "errors_served", "not_found",
                                                "rotations", "cut_while_down")},
                    "mode": self.mode, "fetches_by_key": dict(self.by_key),
                    "current": {"AccessKeyId": cur.access_key_id, "Expiration": format_time(cur.expiration)}}

    @property
    def credentials_uri(self) -> str:
        return f"http://{self._listen[0]}:{self.port}{self.path}"

    @property
    def control_url(self) -> str:
        host, port = self.control_server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._stop.set()
        with self.lock:
            self.mode = "up"
            self.mode_changed.notify_all()
        for srv in (self.creds_server, self.control_server):
            srv.shutdown()
            srv.server_close()


class _Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _json(self, status: int, doc) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _CredsHandler(_Base):
    def do_GET(self) -> None:
        ep: Endpoint = self.server.endpoint
        with ep.lock:
            ep.c["fetches"] += 1
            mode = ep.mode
        if mode == "down":
            # A connection kept alive from before the port closed: a real outage cuts it too.
            with ep.lock:
                ep.c["cut_while_down"] += 1
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if mode == "hang":
            with ep.lock:  # answer nothing until the mode changes (or 60 s pass)
                ep.mode_changed.wait_for(lambda: ep.mode != "hang", timeout=60)
            self.close_connection = True
            return
        if mode == "error":
            with ep.lock:
                ep.c["errors_served"] += 1
            return self._json(500, {"message": "injected credentials endpoint failure"})
        if self.path.split("?")[0] != ep.path:
            with ep.lock:
                ep.c["not_found"] += 1
            return self._json(404, {"message": f"no credentials at {self.path}"})
        if ep.auth_token is not None and self.headers.get("Authorization") != ep.auth_token:
            with ep.lock:
                ep.c["auth_failures"] += 1
            return self._json(401, {"message": "missing or wrong Authorization (AWS_CONTAINER_AUTHORIZATION_TOKEN)"})
        key = ep.current()
        with ep.lock:
            ep.c["served"] += 1
            ep.by_key[key.access_key_id] += 1
        self._json(200, {"AccessKeyId": key.access_key_id, "Expiration": format_time(key.expiration),
                         "RoleArn": ROLE_ARN, "SecretAccessKey": key.secret_access_key, "Token": key.token})


class _ControlHandler(_Base):
    def do_GET(self) -> None:
        if self.path == "/__control/stats":
            return self._json(200, self.server.endpoint.stats())
        self._json(404, {"error": "unknown control endpoint"})

    def do_POST(self) -> None:
        ep: Endpoint = self.server.endpoint
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b"{}"
        try:
            if self.path == "/__control/mode":
                ep.set_mode(json.loads(body)["mode"])
                return self._json(200, {"mode": ep.mode})
            if self.path == "/__control/rotate":
                key = ep.rotate()
                return self._json(200, {"AccessKeyId": key.access_key_id, "Expiration": format_time(key.expiration)})
        except (ValueError, KeyError, TypeError) as e:
            return self._json(400, {"error": str(e)})
        self._json(404, {"error": "unknown control endpoint"})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys-file", required=True, help="where the issued credentials go (sigv4_proxy --credentials)")
    p.add_argument("--rotate-every", type=float, default=60, help="seconds between new credential sets")
    p.add_argument("--grace", type=float, default=20, help="seconds an old set outlives the next one's issue")
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--control-listen", default="127.0.0.1:0")
    p.add_argument("--path", default="/v2/credentials/f4a-task")
    p.add_argument("--auth-token", help="require this Authorization header value")
    p.add_argument("--port-file", help="write the credentials port here")
    a = p.parse_args(argv)

    def addr(s):
        host, _, port = s.rpartition(":")
        return host or "127.0.0.1", int(port)

    ep = Endpoint(a.keys_file, a.rotate_every, a.grace, listen=addr(a.listen), control_listen=addr(a.control_listen),
                  path=a.path, auth_token=a.auth_token)
    if a.port_file:
        with open(a.port_file, "w") as f:
            f.write(str(ep.port))
    print(json.dumps({"credentials_uri": ep.credentials_uri, "control": ep.control_url, "keys_file": a.keys_file}),
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        ep.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
