"""Self-tests of the ECS-style credentials endpoint: the shape an AWS SDK accepts (botocore's own
container provider reads it), rotation with overlap, the keys file the proxy trusts, faults."""

from __future__ import annotations

import http.client
import json
import socket
import time
from datetime import datetime, timezone

import pytest
from botocore.credentials import ContainerProvider
from proxy_testkit import call, send
from proxy_testkit import keys_file, make_proxy, upstream  # noqa: F401 (fixtures)

from ecs_credentials import Endpoint
from sigv4_verify import Key, KeyStore, parse_time


@pytest.fixture
def endpoint(tmp_path):
    eps = []

    def make(**kw):
        ep = Endpoint(str(tmp_path / "ecs-keys.json"), **kw)
        eps.append(ep)
        return ep

    yield make
    for ep in eps:
        ep.close()


def fetch(ep: Endpoint, token: str | None = None, timeout: float = 5):
    conn = http.client.HTTPConnection("127.0.0.1", ep.port, timeout=timeout)
    conn.request("GET", ep.path, headers={"Authorization": token} if token else {})
    resp = conn.getresponse()
    out = resp.status, resp.read()
    conn.close()
    return out


def control(ep: Endpoint, path: str, doc=None):
    method = "POST" if doc is not None else "GET"
    return json.loads(send(ep.control_url, method, path, body=json.dumps(doc).encode() if doc is not None else b"")[2])


def test_the_ecs_shape_is_what_an_aws_sdk_reads(endpoint):
    ep = endpoint(auth_token="Bearer s3cr3t")
    status, body = fetch(ep, "Bearer s3cr3t")
    doc = json.loads(body)
    assert status == 200 and list(doc) == ["AccessKeyId", "Expiration", "RoleArn", "SecretAccessKey", "Token"]
    assert doc["AccessKeyId"].startswith("ASIA") and len(doc["AccessKeyId"]) == 20
    assert doc["Expiration"].endswith("Z") and parse_time(doc["Expiration"]) > datetime.now(timezone.utc)
    # botocore's own container provider (what every AWS SDK implements) loads it.
    creds = ContainerProvider(environ={"AWS_CONTAINER_CREDENTIALS_FULL_URI": ep.credentials_uri,
                                       "AWS_CONTAINER_AUTHORIZATION_TOKEN": "Bearer s3cr3t"}).load()
    frozen = creds.get_frozen_credentials()
    assert (frozen.access_key, frozen.secret_key, frozen.token) == (doc["AccessKeyId"], doc["SecretAccessKey"], doc["Token"])


def test_authorization_token_is_checked(endpoint):
    ep = endpoint(auth_token="tok")
    assert fetch(ep)[0] == 401
    assert fetch(ep, "other")[0] == 401
    assert fetch(ep, "tok")[0] == 200
    s = control(ep, "/__control/stats")
    assert (s["fetches"], s["served"], s["auth_failures"]) == (3, 1, 2)


def test_rotation_overlap_and_expiry_through_the_proxy(endpoint, make_proxy):
    ep = endpoint(rotate_every=1, grace=0.5)
    first = json.loads(fetch(ep)[1])
    time.sleep(1.1)  # rotated once: the first set is still inside its grace window
    second = json.loads(fetch(ep)[1])
    assert first["AccessKeyId"] != second["AccessKeyId"]
    keys = KeyStore(ep.keys_file)
    assert keys.get(first["AccessKeyId"]) and keys.get(second["AccessKeyId"])

    proxy = make_proxy()
    proxy.verifier.keys = keys

    def as_key(d):
        return Key(d["AccessKeyId"], d["SecretAccessKey"], d["Token"])

    assert call(proxy, "GET", "/", key=as_key(first))[0] == 200, "old set valid until its own Expiration"
    time.sleep(max(0.0, (parse_time(first["Expiration"]) - datetime.now(timezone.utc)).total_seconds()) + 0.05)
    resp = call(proxy, "GET", "/", key=as_key(first))
    assert (resp[0], resp[1]["x-f4a-proxy-reason"]) == (403, "expired_token")
    latest = json.loads(fetch(ep)[1])
    assert call(proxy, "GET", "/", key=as_key(latest))[0] == 200
    s = control(ep, "/__control/stats")
    assert s["rotations"] >= 2 and s["served"] == 3 and s["current"]["AccessKeyId"] == latest["AccessKeyId"]


def test_forced_rotation(endpoint):
    ep = endpoint(rotate_every=3600)
    before = json.loads(fetch(ep)[1])["AccessKeyId"]
    rotated = control(ep, "/__control/rotate", {})
    assert rotated["AccessKeyId"] != before == next(iter(control(ep, "/__control/stats")["fetches_by_key"]))
    assert json.loads(fetch(ep)[1])["AccessKeyId"] == rotated["AccessKeyId"]


def test_fault_modes(endpoint):
    ep = endpoint()
    control(ep, "/__control/mode", {"mode": "down"})
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", ep.port), timeout=2).close()
    control(ep, "/__control/mode", {"mode": "error"})
    assert fetch(ep)[0] == 500
    control(ep, "/__control/mode", {"mode": "hang"})
    with pytest.raises(TimeoutError):
        fetch(ep, timeout=0.3)
    control(ep, "/__control/mode", {"mode": "up"})
    assert fetch(ep)[0] == 200
    s = control(ep, "/__control/stats")
    assert s["mode"] == "up" and s["errors_served"] == 1 and s["served"] == 1
    assert "error" in control(ep, "/__control/mode", {"mode": "sideways"})


def test_down_cuts_a_connection_kept_alive_from_before(endpoint):
    """A client (the AWS SDK) keeping its connection alive must not be served while down."""
    import http.client
    ep = endpoint()
    conn = http.client.HTTPConnection("127.0.0.1", ep.port, timeout=2)
    conn.request("GET", ep.path)
    first = conn.getresponse()
    first.read()
    assert first.status == 200
    control(ep, "/__control/mode", {"mode": "down"})
    conn.request("GET", ep.path)
    with pytest.raises((http.client.HTTPException, ConnectionError)):
        conn.getresponse()
    assert control(ep, "/__control/stats")["cut_while_down"] == 1


def test_command_lines_work_together(tmp_path, upstream):
    """The two tools as the Rust tests run them: processes that print where they listen."""
    import os
    import subprocess
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    keys = str(tmp_path / "keys.json")
    procs = []
    try:
        for args in ([os.path.join(here, "ecs_credentials.py"), "--keys-file", keys, "--auth-token", "t0k"],
                     [os.path.join(here, "sigv4_proxy.py"), "--upstream", upstream.url, "--credentials", keys,
                      "--service", "aoss", "--region", "eu-west-1", "--collection-type", "timeseries"]):
            procs.append(subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, text=True))
        ecs, proxy = (json.loads(p.stdout.readline()) for p in procs)
        creds = ContainerProvider(environ={"AWS_CONTAINER_CREDENTIALS_FULL_URI": ecs["credentials_uri"],
                                           "AWS_CONTAINER_AUTHORIZATION_TOKEN": "t0k"}).load().get_frozen_credentials()
        from proxy_testkit import sign

        host = proxy["proxy"].split("//")[1]
        target, headers = sign(host, "GET", "/_cat/indices", key=Key(creds.access_key, creds.secret_key, creds.token),
                               service="aoss", region="eu-west-1")
        assert send(proxy["proxy"], "GET", target, headers)[0] == 200
        target, headers = sign(host, "GET", "/", key=Key(creds.access_key, creds.secret_key, creds.token),
                               service="aoss", region="eu-west-1")
        assert send(proxy["proxy"], "GET", target, headers)[0] == 404
        s = json.loads(send(proxy["proxy"], "GET", "/__proxy/stats")[2])
        assert s["accepted"] == 2 and s["aoss"] == {"not_found": 1, "refresh_refused": 0, "document_id_refused": 0,
                                                    "bulk_rewritten": 0, "collection_type": "timeseries"}
        # botocore refreshes credentials that expire within 15 minutes on every use: >= 1 fetch.
        assert json.loads(send(ecs["control"], "GET", "/__control/stats")[2])["served"] >= 1
    finally:
        for p in procs:
            p.terminate()
            p.wait(5)
