"""Server-side AWS Signature V4 verification, written independently of the worker's signer.

The worker signs with the Rust `aws-sigv4` crate; this module recomputes every signature with
botocore's SigV4 implementation from the wire request (method, raw path and query, the headers
the client listed in SignedHeaders, the exact body bytes) and the secret the test gave it, the
way Amazon OpenSearch Service (`es`) and OpenSearch Serverless (`aoss`) do. It owns the checks
and the AWS-shaped refusals; `sigv4_proxy.py` owns the HTTP side.

Signing bugs peers shipped, and the check here that catches each (reason in brackets):

- Body signed before compression, gzip sent (Vector #833/#907 "compression not supported on
  AWS", opensearch-net #104, aws-request-signing-apache-interceptor #10, elasticsearch-net-aws
  #36/#64, OpenSearch #3640 chunked + gzip): `x-amz-content-sha256` must equal SHA-256 of the
  bytes on the wire [content_sha256_mismatch; the detail says when it is the hash of the
  uncompressed body], or without the header the signature is recomputed over the wire bytes
  [signature_mismatch, detail "signed the uncompressed body"].
- Session token left out of the request or the signature (Vector #12249 fixed by #12258,
  elasticsearch-dump #328) [missing_session_token, invalid_session_token, unsigned_amz_header].
- Expired task-role credentials never refreshed, the output stalls (Fluent Bit #10727, aws-for-
  fluent-bit #187, fluent-plugin-opensearch #24/#74, Vector #2815, elastic4s #1195, elastalert
  #983): credentials carry an Expiration, the proxy answers "The security token included in the
  request is expired" after it [expired_token].
- Signed host differs from the Host sent: port kept or dropped (curl #9550, botocore #2965, a
  Rust SigV4 proxy that used `host_str()`), a proxy/VPC endpoint rewriting Host (aws-sdk-net
  #3295) [host_mismatch, host_not_signed].
- `x-amz-content-sha256` absent or unsigned, required by Serverless (opensearch-js #366, aws4
  #169, aws4fetch #66, FantasticFiasco/aws-signature-version-4 #1067, opensearch-py #1038)
  [missing_content_sha256, unsigned_amz_header]; opensearch-rs signs a streamed body as
  UNSIGNED-PAYLOAD [unsigned_payload].
- Hop-by-hop headers (Connection, Transfer-Encoding) or Content-Length signed, which a load
  balancer strips or rewrites (opensearch-py #1047; opensearch-js #356: Serverless refuses a
  signed content-length) [forbidden_signed_header, signed_header_missing].
- Query string signed but not sent, or sent but not signed (nulib/dc-api-v2 #389, aws-sdk-js-v3
  #2996), path quoted twice or not normalised (opensearch-py #833/#839, Data Prepper #2843
  trailing slash in the host → `//_bulk`) [signature_mismatch; the detail names
  query_not_signed, query_not_reencoded, path_single_encoded or path_not_normalised when one of
  those reproduces the client's signature].
- A retry re-sent with the first attempt's signature minutes later (opensearch-go #202, Fluent
  Bit 4.2 "signature handling on retry") [stale_date beyond 5 minutes; a re-used signature is
  counted by the proxy as `replayed_signatures`].
- Wrong service name or region in the scope: `es` used for Serverless (Vector #16252), region
  not configured (aws-ia/terraform-aws-bedrock #102) [wrong_service, wrong_region].
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import os
import threading
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials
from botocore.utils import normalize_url_path

AMZ_DATE = "%Y%m%dT%H%M%SZ"
ISO8601 = "%Y-%m-%dT%H:%M:%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# Headers a hop (load balancer, proxy, VPC endpoint) may drop or rewrite: signing one breaks.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
     "te", "trailer", "transfer-encoding", "upgrade"}
)

MSG_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)
MSG_INVALID_TOKEN = "The security token included in the request is invalid."
MSG_EXPIRED_TOKEN = "The security token included in the request is expired"


# ------------------------------------------------------------------ credentials


@dataclass(frozen=True)
class Key:
    access_key_id: str
    secret_access_key: str
    token: str | None = None
    expiration: datetime | None = None


def parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    return datetime.strptime(s.replace(".000Z", "Z"), ISO8601).replace(tzinfo=timezone.utc)


def format_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime(ISO8601)


def write_keys_file(path: str, keys: list[Key]) -> None:
    """Atomically (write + rename) store the valid credentials in the shape ECS serves them."""
    doc = {"credentials": [
        {"AccessKeyId": k.access_key_id, "SecretAccessKey": k.secret_access_key, "Token": k.token,
         "Expiration": format_time(k.expiration) if k.expiration else None}
        for k in keys
    ]}
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1)
    os.replace(tmp, path)


class KeyStore:
    """The credentials the proxy accepts, from a JSON file re-read whenever it changes, so a test
    (or ecs_credentials.py) can rotate them while the proxy runs. Static keys may be added too."""

    def __init__(self, path: str | None = None, keys: list[Key] | tuple = ()):
        self.path = path
        self._static = {k.access_key_id: k for k in keys}
        self._file: dict[str, Key] = {}
        self._stamp: tuple | None = None
        self._lock = threading.Lock()
        self.file_errors = 0

    def _reload(self) -> None:
        if not self.path:
            return
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._file, self._stamp = {}, None
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            with open(self.path) as f:
                doc = json.load(f)
            self._file = {
                c["AccessKeyId"]: Key(c["AccessKeyId"], c["SecretAccessKey"], c.get("Token") or None,
                                      parse_time(c.get("Expiration")))
                for c in doc.get("credentials", [])
            }
            self._stamp = stamp
        except (OSError, ValueError, KeyError, TypeError):
            self.file_errors += 1  # keep the previous set; the writer renames atomically anyway

    def get(self, access_key_id: str) -> Key | None:
        with self._lock:
            self._reload()
            return self._static.get(access_key_id) or self._file.get(access_key_id)


# ------------------------------------------------------------------ outcomes


@dataclass
class Rejection:
    reason: str  # machine-readable: the stats key and the x-f4a-proxy-reason header
    message: str  # AWS-shaped text for the 403 body
    detail: str = ""  # what exactly was wrong, for the test's failure message
    status: int = 403


@dataclass
class Verified:
    access_key_id: str
    signature: str
    token: str | None
    content_sha256: str | None


class _Signer(SigV4Auth):
    """botocore's SigV4 with exactly the client's SignedHeaders and the wire path, plus the few
    deliberate deviations the diagnosis uses to name what a wrong client did."""

    def __init__(self, key: Key, service: str, region: str, signed: list[str], path: str, path_mode: str):
        super().__init__(Credentials(key.access_key_id, key.secret_access_key, key.token), service, region)
        self._signed = signed
        self._path = path
        self._path_mode = path_mode

    def headers_to_sign(self, request):
        out = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                out[name] = value
        return out

    def _normalize_url_path(self, _path):
        if self._path_mode == "single":  # S3-style: the wire path as it is
            return normalize_url_path(self._path)
        if self._path_mode == "raw":  # encoded again but never normalised
            return quote(self._path or "/", safe="/~")
        return super()._normalize_url_path(self._path)  # the es/aoss rule: normalise, encode again


def _query_pairs(query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in query.split("&"):
        if part:
            k, _, v = part.partition("=")
            pairs.append((unquote(k), unquote(v)))
    return pairs


def gunzip_or_none(body: bytes) -> bytes | None:
    if body[:2] != b"\x1f\x8b":
        return None
    try:
        return gzip.decompress(body)
    except (OSError, EOFError, zlib.error):
        return None


def _header_map(headers: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers:
        out.setdefault(name.lower(), []).append(value)
    return out


def _parse_authorization(value: str) -> tuple[dict[str, str], list[str]]:
    missing = []
    if not value.startswith("AWS4-HMAC-SHA256 "):
        return {}, ["algorithm"]
    parts = {}
    for item in value[len("AWS4-HMAC-SHA256 "):].split(","):
        k, _, v = item.strip().partition("=")
        parts[k] = v
    for need in ("Credential", "SignedHeaders", "Signature"):
        if not parts.get(need):
            missing.append(need)
    return parts, missing


class Verifier:
    def __init__(self, keys: KeyStore, service: str, region: str, *, max_skew: int = 300,
                 require_content_sha256: bool = True, forbid_signed: frozenset[str] = HOP_BY_HOP,
                 host_aliases: tuple[str, ...] = (), clock=None):
        self.keys = keys
        self.service = service
        self.region = region
        self.max_skew = max_skew
        self.require_content_sha256 = require_content_sha256
        self.forbid_signed = frozenset(h.lower() for h in forbid_signed)
        self.host_aliases = tuple(host_aliases)  # other names a wrong client might sign (e.g. the upstream's)
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    # The checks run in the order AWS reports them: form, scope, clock, identity, headers, body, signature.
    def verify(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Verified | Rejection:
        h = _header_map(headers)
        auth = h.get("authorization", [])
        if not auth:
            action = f"{self.service}:ESHttp{method.capitalize()}" if self.service == "es" else f"{self.service}:APIAccessAll"
            return Rejection("missing_authorization",
                             f"User: anonymous is not authorized to perform: {action} because no "
                             f"resource-based policy allows the {action} action")
        if len(auth) > 1:
            return Rejection("malformed_authorization", "Authorization header may appear only once.")
        parts, missing = _parse_authorization(auth[0])
        if missing:
            msg = " ".join(f"Authorization header requires '{m}' parameter." for m in missing if m != "algorithm")
            return Rejection("malformed_authorization", msg or "Unsupported authorization type", auth[0][:80])
        amz_dates = h.get("x-amz-date", [])
        if len(amz_dates) != 1:
            return Rejection("missing_date", "Authorization header requires existence of either a "
                             "'X-Amz-Date' or a 'Date' header.", "this proxy requires X-Amz-Date")
        try:
            signed_at = datetime.strptime(amz_dates[0], AMZ_DATE).replace(tzinfo=timezone.utc)
        except ValueError:
            return Rejection("malformed_date", f"Date must be in ISO-8601 'basic format'. Got '{amz_dates[0]}'.")
        scope = parts["Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            return Rejection("malformed_authorization", "Credential should be scoped with a valid terminator: "
                             "'aws4_request'.", parts["Credential"])
        akid, day, region, service, _ = scope
        if day != amz_dates[0][:8]:
            return Rejection("scope_date_mismatch", f"Date in Credential scope does not match YYYYMMDD from "
                             f"ISO-8601 version of date from HTTP: '{day}' != '{amz_dates[0][:8]}'.")
        if region != self.region:
            return Rejection("wrong_region", f"Credential should be scoped to a valid region, not '{region}'. ",
                             f"expected {self.region}")
        if service != self.service:
            return Rejection("wrong_service", f"Credential should be scoped to correct service: '{self.service}'. ",
                             f"signed for {service}")
        now = self.clock()
        skew = timedelta(seconds=self.max_skew)
        if signed_at < now - skew:
            return Rejection("stale_date", f"Signature expired: {amz_dates[0]} is now earlier than "
                             f"{(now - skew).strftime(AMZ_DATE)} ({now.strftime(AMZ_DATE)} - 5 min.)")
        if signed_at > now + skew:
            return Rejection("stale_date", f"Signature not yet current: {amz_dates[0]} is still later than "
                             f"{(now + skew).strftime(AMZ_DATE)} ({now.strftime(AMZ_DATE)} + 5 min.)")

        key = self.keys.get(akid)
        if key is None:
            return Rejection("unknown_access_key", MSG_INVALID_TOKEN, f"access key {akid} is not known")
        tokens = h.get("x-amz-security-token", [])
        if key.token and not tokens:
            return Rejection("missing_session_token", MSG_INVALID_TOKEN,
                             f"{akid} is a temporary credential: X-Amz-Security-Token is required")
        if tokens and (not key.token or len(tokens) > 1 or not hmac.compare_digest(tokens[0], key.token)):
            return Rejection("invalid_session_token", MSG_INVALID_TOKEN, f"wrong or unexpected session token for {akid}")
        if key.expiration and now >= key.expiration:
            return Rejection("expired_token", MSG_EXPIRED_TOKEN,
                             f"{akid} expired at {format_time(key.expiration)}")

        signed = [s.strip().lower() for s in parts["SignedHeaders"].split(";") if s.strip()]
        if "host" not in signed:
            return Rejection("host_not_signed", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
        absent = [s for s in signed if s not in h]
        if absent:
            return Rejection("signed_header_missing", MSG_SIGNATURE,
                             f"signed but not sent: {', '.join(absent)} (changed by the HTTP client after signing?)")
        forbidden = [s for s in signed if s in self.forbid_signed]
        if forbidden:
            return Rejection("forbidden_signed_header", MSG_SIGNATURE,
                             f"signed {', '.join(forbidden)}, which a load balancer strips or rewrites")
        unsigned_amz = sorted(n for n in h if n.startswith("x-amz-") and n not in signed)
        if unsigned_amz:
            return Rejection("unsigned_amz_header", "There were headers present in the request which were not signed",
                             f"HeadersNotSigned: {', '.join(unsigned_amz)}")

        wire_sha = hashlib.sha256(body).hexdigest()
        content_sha = h.get("x-amz-content-sha256", [None])[0]
        if content_sha is None and self.require_content_sha256:
            return Rejection("missing_content_sha256", "Missing required header for this request: x-amz-content-sha256")
        if content_sha == "UNSIGNED-PAYLOAD":
            return Rejection("unsigned_payload", "The provided 'x-amz-content-sha256' header does not match what was "
                             "computed.", "UNSIGNED-PAYLOAD: the body must be signed")
        if content_sha is not None and content_sha.lower() != wire_sha:
            return Rejection("content_sha256_mismatch", "The provided 'x-amz-content-sha256' header does not match "
                             "what was computed.", self._explain_body_hash(content_sha, body, wire_sha))

        path, _, query = target.partition("?")
        host = h["host"][0]
        expected, cr, sts = self._sign(key, method, path, _query_pairs(query), headers, signed, body, amz_dates[0])
        given = parts["Signature"].lower()
        if not hmac.compare_digest(expected, given):
            return self._diagnose(key, method, path, query, headers, signed, body, amz_dates[0], given, host, cr, sts)
        return Verified(akid, given, tokens[0] if tokens else None, content_sha)

    def _sign(self, key, method, path, params, headers, signed, body, amz_date, path_mode="double", host=None):
        req = AWSRequest(method=method.upper(), url="http://signing.invalid/", data=body, params=params)
        for name, value in headers:
            if name.lower() in signed:
                req.headers[name.lower()] = host if (host is not None and name.lower() == "host") else value
        req.context["timestamp"] = amz_date
        signer = _Signer(key, self.service, self.region, signed, path, path_mode)
        cr = signer.canonical_request(req)
        sts = signer.string_to_sign(req, cr)
        return signer.signature(sts, req), cr, sts

    @staticmethod
    def _explain_body_hash(content_sha: str, body: bytes, wire_sha: str) -> str:
        plain = gunzip_or_none(body)
        if plain is not None and hashlib.sha256(plain).hexdigest() == content_sha.lower():
            return "x-amz-content-sha256 is the hash of the uncompressed body: sign the gzip bytes that are sent"
        if content_sha.lower() == EMPTY_SHA256 and body:
            return "x-amz-content-sha256 is the hash of an empty body, but a body was sent (body consumed before signing?)"
        return f"header {content_sha}, wire body ({len(body)} bytes) hashes to {wire_sha}"

    def _diagnose(self, key, method, path, query, headers, signed, body, amz_date, given, host, cr, sts) -> Rejection:
        """Name the mistake when one known wrong way of signing reproduces the client's signature."""
        params = _query_pairs(query)
        tries = []
        port = host.rpartition(":")[2] if ":" in host else ""
        bare = host.rsplit(":", 1)[0] if port.isdigit() else host
        alts = {bare, f"{bare}:80", f"{bare}:443", *self.host_aliases}
        if port.isdigit():
            alts |= {f"localhost:{port}", f"127.0.0.1:{port}"}
        for alt in sorted(alts - {host}):
            tries.append((f"host_mismatch: signed host '{alt}' but the Host header is '{host}'", dict(host=alt)))
        if "x-amz-content-sha256" not in signed:
            plain = gunzip_or_none(body)
            if plain is not None:
                tries.append(("signed the uncompressed body but sent gzip", dict(body=plain)))
        if query:
            tries.append(("query_not_signed: the query string sent is not in the signature", dict(params=[])))
            raw = [tuple(p.partition("=")[::2]) for p in query.split("&") if p]
            tries.append(("query_not_reencoded: query signed as sent, not in canonical encoding", dict(raw_query=raw)))
        tries.append(("path_single_encoded: path encoded once (S3 style), es/aoss encode it twice", dict(path_mode="single")))
        tries.append(("path_not_normalised: path signed without removing '//' and dot segments", dict(path_mode="raw")))
        for label, alt in tries:
            if "raw_query" in alt:
                sig = self._sign_raw_query(key, method, path, alt["raw_query"], headers, signed, body, amz_date)
            else:
                sig = self._sign(key, method, path, alt.get("params", params), headers, signed, alt.get("body", body),
                                 amz_date, alt.get("path_mode", "double"), alt.get("host"))[0]
            if hmac.compare_digest(sig, given):
                reason = "host_mismatch" if label.startswith("host_mismatch") else "signature_mismatch"
                return Rejection(reason, MSG_SIGNATURE, label)
        message = (f"{MSG_SIGNATURE}\n\nThe Canonical String for this request should have been\n'{cr}'\n\n"
                   f"The String-to-Sign should have been\n'{sts}'\n")
        return Rejection("signature_mismatch", message, "wrong secret, or headers/path/query/body changed after signing")

    def _sign_raw_query(self, key, method, path, raw_pairs, headers, signed, body, amz_date):
        canonical_query = "&".join(f"{k}={v}" for k, v in sorted(raw_pairs))

        class _Raw(_Signer):
            def canonical_query_string(self, request):
                return canonical_query

        req = AWSRequest(method=method.upper(), url="http://signing.invalid/", data=body)
        for name, value in headers:
            if name.lower() in signed:
                req.headers[name.lower()] = value
        req.context["timestamp"] = amz_date
        signer = _Raw(key, self.service, self.region, signed, path, "double")
        cr = signer.canonical_request(req)
        return signer.signature(signer.string_to_sign(req, cr), req)
