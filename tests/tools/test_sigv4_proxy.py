"""Self-tests of the SigV4-verifying proxy: valid signatures pass unchanged, each known way of
signing wrong is refused with its own reason, and the Serverless differences hold."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import datetime, timedelta, timezone

import pytest
from urllib.parse import quote

from botocore.auth import S3SigV4Auth, SigV4Auth
from proxy_testkit import LONG_KEY, TEMP_KEY, call, send, sign, stats
from proxy_testkit import keys_file, make_proxy, upstream  # noqa: F401 (fixtures)

from sigv4_verify import AMZ_DATE, Key, KeyStore, Rejection, Verified, Verifier, write_keys_file

BULK = b'{"index":{"_index":"f4a-2026.11.24","_id":"a1"}}\n{"msg":"one"}\n{"index":{"_index":"f4a-2026.11.24"}}\n' \
       b'{"msg":"two"}\n{"create":{"_index":"f4a-2026.11.24","_id":"a3"}}\n{"msg":"three"}\n'


def reason(resp) -> str:
    return resp[1].get("x-f4a-proxy-reason", f"<accepted {resp[0]}>")


# ------------------------------------------------------------------ AWS's own test vectors


@pytest.mark.parametrize("target,signature", [
    ("/", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),  # get-vanilla
    ("/?Param2=value2&Param1=value1", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
])
def test_aws_sigv4_test_suite_vectors(target, signature):
    """The AWS SigV4 test suite (get-vanilla, get-vanilla-query-order-key-case): an anchor outside botocore."""
    key = Key("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    v = Verifier(KeyStore(keys=[key]), "service", "us-east-1", require_content_sha256=False,
                 clock=lambda: datetime(2015, 8, 30, 12, 36, tzinfo=timezone.utc))
    auth = ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={signature}")
    headers = [("Host", "example.amazonaws.com"), ("X-Amz-Date", "20150830T123600Z"), ("Authorization", auth)]
    assert isinstance(v.verify("GET", target, headers, b""), Verified)
    bad = headers[:2] + [("Authorization", auth[:-1] + ("0" if auth[-1] != "0" else "1"))]
    assert v.verify("GET", target, bad, b"").reason == "signature_mismatch"


# ------------------------------------------------------------------ accepted and forwarded unchanged


def test_valid_request_is_forwarded_byte_for_byte(make_proxy, upstream):
    proxy = make_proxy()
    status, headers, body = call(proxy, "POST", "/_bulk", [("filter_path", "items.*.error")], BULK,
                                 [("Content-Type", "application/x-ndjson")])
    assert status == 200, body
    assert json.loads(body)["items"][0]["index"]["status"] == 201
    seen = upstream.seen[-1]
    assert seen["body"] == BULK and seen["target"] == "/_bulk?filter_path=items.%2A.error"
    assert "Authorization" not in seen["headers"] and "X-Amz-Security-Token" not in seen["headers"]
    s = stats(proxy)
    assert (s["requests"], s["accepted"], s["rejected"], s["forwarded"]) == (1, 1, 0, 1)
    assert s["bytes_in"] == len(BULK) and s["access_keys"] == {TEMP_KEY.access_key_id: 1}
    assert s["endpoints"] == {"POST /_bulk": 1}


def test_long_term_key_without_session_token(make_proxy):
    proxy = make_proxy()
    assert call(proxy, "GET", "/", key=LONG_KEY)[0] == 200


def test_gzip_body_signed_over_the_compressed_bytes(make_proxy, upstream):
    proxy = make_proxy()
    gz = gzip.compress(BULK, mtime=0)
    resp = call(proxy, "POST", "/_bulk", body=gz, headers=[("Content-Encoding", "gzip")])
    assert resp[0] == 200, resp
    assert upstream.seen[-1]["body"] == gz and upstream.seen[-1]["headers"]["Content-Encoding"] == "gzip"
    assert stats(proxy)["content_encoding"] == {"gzip": 1}


def test_gzip_body_signed_over_the_uncompressed_bytes_is_refused(make_proxy):
    proxy = make_proxy()
    gz = gzip.compress(BULK, mtime=0)
    host = f"127.0.0.1:{proxy.server_address[1]}"
    target, headers = sign(host, "POST", "/_bulk", body=BULK, headers=[("Content-Encoding", "gzip")])
    resp = send(proxy.url, "POST", target, headers, gz)
    assert resp[0] == 403 and reason(resp) == "content_sha256_mismatch"
    assert "uncompressed" in resp[1]["x-f4a-proxy-detail"]
    assert json.loads(resp[2])["message"].startswith("The provided 'x-amz-content-sha256' header does not match")


def test_uncompressed_signature_without_content_sha256_is_named(make_proxy):
    proxy = make_proxy(require_content_sha256=False)
    gz = gzip.compress(BULK, mtime=0)
    host = f"127.0.0.1:{proxy.server_address[1]}"
    target, headers = sign(host, "POST", "/_bulk", body=BULK, headers=[("Content-Encoding", "gzip")], content_sha=None)
    resp = send(proxy.url, "POST", target, headers, gz)
    assert reason(resp) == "signature_mismatch" and "uncompressed" in resp[1]["x-f4a-proxy-detail"]


def test_chunked_body_is_verified_and_forwarded(make_proxy, upstream):
    proxy = make_proxy()
    host = f"127.0.0.1:{proxy.server_address[1]}"
    target, headers = sign(host, "POST", "/_bulk", body=BULK)
    resp = send(proxy.url, "POST", target, headers, BULK, chunked=True)
    assert resp[0] == 200, resp
    assert upstream.seen[-1]["body"] == BULK and stats(proxy)["chunked"] == 1


# ------------------------------------------------------------------ each tampering, its reason


class _RawPathSigner(SigV4Auth):
    """Signs `//_bulk` as it is, like Data Prepper did with a trailing slash in its host (#2843)."""

    def _normalize_url_path(self, path):
        return quote(path, safe="/~")


def _stale(minutes: int) -> str:
    return (datetime.now(timezone.utc) + timedelta(minutes=minutes)).strftime(AMZ_DATE)


def _tamper_cases():
    other_secret = Key(TEMP_KEY.access_key_id, "wrongSecret", TEMP_KEY.token)
    return {
        "signature_mismatch": dict(sign_kw=dict(key=other_secret)),
        "unknown_access_key": dict(sign_kw=dict(key=Key("ASIANOBODYKNOWSTHIS1", "x", "t"))),
        "stale_date": dict(sign_kw=dict(amz_date=_stale(-6))),
        "stale_date_future": dict(sign_kw=dict(amz_date=_stale(+6)), expect="stale_date"),
        "missing_content_sha256": dict(sign_kw=dict(content_sha=None)),
        "unsigned_payload": dict(sign_kw=dict(content_sha="UNSIGNED-PAYLOAD")),
        "content_sha256_mismatch": dict(body_after=BULK + b'{"delete":{"_id":"x"}}\n'),
        "missing_session_token": dict(sign_kw=dict(with_token=False)),
        "invalid_session_token": dict(edit=lambda h: [(n, "AAAA" if n == "X-Amz-Security-Token" else v) for n, v in h]),
        "unsigned_amz_header": dict(sign_kw=dict(with_token=False),
                                    edit=lambda h: h + [("X-Amz-Security-Token", TEMP_KEY.token)]),
        "wrong_region": dict(sign_kw=dict(region="eu-west-1")),
        "wrong_service": dict(sign_kw=dict(service="aoss")),
        "missing_authorization": dict(edit=lambda h: [(n, v) for n, v in h if n != "Authorization"]),
        "host_mismatch": dict(sign_host="127.0.0.1"),
        "host_not_signed": dict(edit=lambda h: [(n, v.replace("host;", "") if n == "Authorization" else v) for n, v in h]),
        "forbidden_signed_header": dict(sign_kw=dict(headers=[("Connection", "keep-alive")])),
        "signed_header_missing": dict(sign_kw=dict(headers=[("Content-Type", "application/json")]),
                                      edit=lambda h: [(n, v) for n, v in h if n != "Content-Type"]),
        "query_not_signed": dict(target="/_bulk?filter_path=errors", expect="signature_mismatch",
                                 detail="query_not_signed"),
        "query_signed_not_sent": dict(sign_kw=dict(params=[("filter_path", "errors")]), target="/_bulk",
                                      expect="signature_mismatch"),
        "path_not_normalised": dict(path="//_bulk", sign_kw=dict(signer_cls=_RawPathSigner),
                                    expect="signature_mismatch", detail="path_not_normalised"),
        "path_single_encoded": dict(path="/f4a-dead-letter/_doc/a%2Fb", method="PUT",
                                    sign_kw=dict(signer_cls=S3SigV4Auth), expect="signature_mismatch",
                                    detail="path_single_encoded"),
    }


@pytest.mark.parametrize("case", sorted(_tamper_cases()))
def test_each_tampering_is_refused_with_its_reason(make_proxy, upstream, case):
    c = _tamper_cases()[case]
    proxy = make_proxy()
    port = proxy.server_address[1]
    method, path = c.get("method", "POST"), c.get("path", "/_bulk")
    sign_kw = dict(c.get("sign_kw", {}))
    params = sign_kw.pop("params", ())
    target, headers = sign(f"{c.get('sign_host', '127.0.0.1')}:{port}" if "sign_host" not in c else c["sign_host"],
                           method, path, params, BULK, sign_kw.pop("headers", ()), **sign_kw)
    if "sign_host" in c:
        headers = [(n, f"127.0.0.1:{port}" if n == "Host" else v) for n, v in headers]
    headers = c.get("edit", lambda h: h)(headers)
    resp = send(proxy.url, method, c.get("target", target), headers, c.get("body_after", BULK))
    assert resp[0] == 403, resp
    assert reason(resp) == c.get("expect", case), resp[1].get("x-f4a-proxy-detail")
    if "detail" in c:
        assert c["detail"] in resp[1]["x-f4a-proxy-detail"]
    assert upstream.seen == [], "a refused request never reaches the engine"
    s = stats(proxy)
    assert s["rejected"] == 1 and s["accepted"] == 0 and s["rejected_by_reason"] == {c.get("expect", case): 1}
    assert s["last_rejections"][0]["path"] == path


def test_aws_shaped_messages(make_proxy, keys_file):
    expired = Key("ASIAEXPIREDALREADY01", "s3cret", "tok", datetime.now(timezone.utc) - timedelta(seconds=1))
    write_keys_file(keys_file, [TEMP_KEY, expired])
    proxy = make_proxy()
    resp = call(proxy, "GET", "/", key=expired)
    assert (resp[0], reason(resp)) == (403, "expired_token")
    assert json.loads(resp[2]) == {"message": "The security token included in the request is expired"}
    resp = call(proxy, "GET", "/", key=Key(TEMP_KEY.access_key_id, "wrong", TEMP_KEY.token))
    msg = json.loads(resp[2])["message"]
    assert msg.startswith("The request signature we calculated does not match the signature you provided.")
    assert "The Canonical String for this request should have been" in msg and "x-amzn-requestid" in resp[1]
    resp = call(proxy, "GET", "/", amz_date=_stale(-10))
    assert json.loads(resp[2])["message"].startswith("Signature expired: ")


def test_rotating_the_keys_file_takes_effect_at_once(make_proxy, keys_file):
    proxy = make_proxy()
    assert call(proxy, "GET", "/")[0] == 200
    new = Key("ASIAROTATEDKEY000001", "rotated", "tok2")
    write_keys_file(keys_file, [new])
    assert reason(call(proxy, "GET", "/")) == "unknown_access_key"
    assert call(proxy, "GET", "/", key=new)[0] == 200


def test_replayed_signature_is_counted(make_proxy):
    proxy = make_proxy()
    host = f"127.0.0.1:{proxy.server_address[1]}"
    target, headers = sign(host, "POST", "/_bulk", body=BULK)
    assert send(proxy.url, "POST", target, headers, BULK)[0] == 200
    assert send(proxy.url, "POST", target, headers, BULK)[0] == 200
    assert stats(proxy)["replayed_signatures"] == 1


def test_expired_token_fault_injection(make_proxy):
    proxy = make_proxy()
    assert json.loads(send(proxy.url, "POST", "/__proxy/config", body=b'{"expire_next": 1}')[2])["expire_next"] == 1
    assert reason(call(proxy, "GET", "/")) == "expired_token"
    assert call(proxy, "GET", "/")[0] == 200
    s = stats(proxy)
    assert s["faults_injected"] == 1 and s["rejected_by_reason"] == {"expired_token": 1}
    send(proxy.url, "POST", "/__proxy/reset")
    assert stats(proxy)["requests"] == 0


def test_ignore_filter_path_as_aws_does(make_proxy, upstream):
    proxy = make_proxy(ignore_filter_path=True)
    assert call(proxy, "POST", "/_bulk", [("filter_path", "errors"), ("timeout", "1m")], BULK)[0] == 200
    assert upstream.seen[-1]["target"] == "/_bulk?timeout=1m"


def test_signing_the_upstream_or_an_aws_host_is_named(make_proxy, upstream):
    proxy = make_proxy(host_aliases=["search-f4a.us-east-1.es.amazonaws.com"])
    port = proxy.server_address[1]
    for signed_host in (upstream.url.split("//")[1], "search-f4a.us-east-1.es.amazonaws.com"):
        target, headers = sign(signed_host, "GET", "/")
        headers = [(n, f"127.0.0.1:{port}" if n == "Host" else v) for n, v in headers]
        resp = send(proxy.url, "GET", target, headers)
        assert reason(resp) == "host_mismatch" and signed_host in resp[1]["x-f4a-proxy-detail"]


def test_extra_forbidden_signed_header(make_proxy):
    proxy = make_proxy(forbid_signed=["content-length"])
    resp = call(proxy, "POST", "/_bulk", body=BULK, headers=[("Content-Length", str(len(BULK)))])
    assert reason(resp) == "forbidden_signed_header" and "content-length" in resp[1]["x-f4a-proxy-detail"]


def test_verifier_detects_query_signed_unencoded():
    """A client that signs the query exactly as sent (`*` unencoded) instead of canonically."""
    v = Verifier(KeyStore(keys=[LONG_KEY]), "es", "us-east-1")
    body = b""
    sha = hashlib.sha256(body).hexdigest()
    amz = datetime.now(timezone.utc).strftime(AMZ_DATE)
    headers = [("Host", "h:1"), ("X-Amz-Date", amz), ("X-Amz-Content-SHA256", sha)]
    signed = ["host", "x-amz-content-sha256", "x-amz-date"]
    sig = v._sign_raw_query(LONG_KEY, "GET", "/_search", [("q", "a*")], headers, signed, body, amz)
    auth = (f"AWS4-HMAC-SHA256 Credential={LONG_KEY.access_key_id}/{amz[:8]}/us-east-1/es/aws4_request, "
            f"SignedHeaders={';'.join(signed)}, Signature={sig}")
    out = v.verify("GET", "/_search?q=a*", headers + [("Authorization", auth)], body)
    assert isinstance(out, Rejection) and "query_not_reencoded" in out.detail


# ------------------------------------------------------------------ OpenSearch Serverless


def test_aoss_answers_404_where_serverless_has_no_api(make_proxy, upstream):
    proxy = make_proxy(service="aoss")
    for method, path in [("GET", "/"), ("POST", "/f4a-2026.11.24/_refresh"), ("POST", "/_refresh"),
                         ("GET", "/_cluster/health"), ("GET", "/_nodes/stats"), ("GET", "/_cat/health")]:
        status, headers, body = call(proxy, method, path, service="aoss")
        assert (status, body) == (404, b""), (method, path)
        assert headers["server"] == "aoss-amazon"
    assert upstream.seen == []
    for method, path in [("GET", "/_cat/indices"), ("HEAD", "/f4a-dead-letter"), ("POST", "/f4a-x/_search"),
                         ("PUT", "/f4a-dead-letter"), ("POST", "/f4a-x/_doc"), ("DELETE", "/f4a-x/_doc/probe")]:
        assert call(proxy, method, path, service="aoss")[0] == 200, (method, path)
    s = stats(proxy)
    assert s["aoss"]["not_found"] == 6 and s["rejected"] == 0


def test_aoss_refuses_the_true_refresh_policy(make_proxy):
    proxy = make_proxy(service="aoss")
    status, _, body = call(proxy, "POST", "/_bulk", [("refresh", "true")], BULK, service="aoss")
    assert status == 400 and json.loads(body)["error"]["reason"] == "true refresh policy is not supported."


def test_aoss_search_collection_keeps_document_ids(make_proxy, upstream):
    proxy = make_proxy(service="aoss", collection_type="search")
    assert call(proxy, "POST", "/_bulk", body=BULK, service="aoss")[0] == 200
    assert upstream.seen[-1]["body"] == BULK


@pytest.mark.parametrize("compress", [False, True])
def test_aoss_timeseries_refuses_each_item_with_an_id(make_proxy, upstream, compress):
    proxy = make_proxy(service="aoss", collection_type="timeseries")
    body = gzip.compress(BULK, mtime=0) if compress else BULK
    extra = [("Content-Encoding", "gzip")] if compress else []
    status, _, out = call(proxy, "POST", "/_bulk", [("filter_path", "items.*.error")], body, extra, service="aoss")
    assert status == 200
    doc = json.loads(out)
    assert doc["errors"] is True and len(doc["items"]) == 3
    refused = [doc["items"][0]["index"], doc["items"][2]["create"]]
    for item, _id in zip(refused, ["a1", "a3"]):
        assert item["status"] == 400 and item["_id"] == _id
        assert item["error"] == {"type": "illegal_argument_exception",
                                 "reason": "Document ID is not supported in create/index operation request"}
    assert doc["items"][1]["index"]["status"] == 201
    seen = upstream.seen[-1]
    assert seen["body"] == b'{"index":{"_index":"f4a-2026.11.24"}}\n{"msg":"two"}\n'
    assert "Content-Encoding" not in seen["headers"] and "filter_path" not in seen["target"]
    assert stats(proxy)["aoss"]["document_id_refused"] == 2


def test_aoss_timeseries_all_items_with_ids_never_reach_the_engine(make_proxy, upstream):
    proxy = make_proxy(service="aoss", collection_type="vector")
    body = b'{"index":{"_index":"i","_id":"1"}}\n{"a":1}\n'
    status, _, out = call(proxy, "POST", "/i/_bulk", body=body, service="aoss")
    assert status == 200 and json.loads(out)["items"][0]["index"]["status"] == 400
    assert upstream.seen == []
    status, _, out = call(proxy, "PUT", "/i/_doc/1", body=b'{"a":1}', service="aoss")
    assert status == 400 and "Document ID is not supported" in out.decode()


def test_aoss_collection_type_switch_and_content_length_rule(make_proxy, upstream):
    proxy = make_proxy(service="aoss")
    send(proxy.url, "POST", "/__proxy/config", body=b'{"collection_type": "timeseries"}')
    assert stats(proxy)["aoss"]["collection_type"] == "timeseries"
    resp = call(proxy, "POST", "/_bulk", body=BULK, headers=[("Content-Length", str(len(BULK)))], service="aoss")
    assert reason(resp) == "forbidden_signed_header"
    assert reason(call(proxy, "GET", "/_cat/indices", service="es")) == "wrong_service"
