"""What Amazon OpenSearch Serverless answers differently from a node, for the verifying proxy.

Owned here: which requests a collection serves at all (everything else gets Serverless's bare
404: empty body, `server: aoss-amazon`), the refused `refresh=true` policy, and the TIMESERIES /
VECTOR refusal of documents that carry an `_id`, per `_bulk` item. Sources:

- the data-plane API list "Supported operations and plugins in Amazon OpenSearch Serverless"
  (AWS developer guide, serverless-genref): index create/describe/delete/settings/mappings,
  `_bulk`, `_doc`, `_search`, `_count`, `_mget`, `_msearch`, `_cat/indices`, aliases, templates;
  `_create/<id>`, `_update/<id>`, `PUT _doc/<id>` for SEARCH collections only;
- `GET /` → 404 with an empty body and `server: aoss-amazon` (OpenSearch-Dashboards #5707,
  opensearch-ruby #131); `_refresh` → 404 empty (opensearch-py #646, k-NN #1037, mem0 #3739,
  opensearch-hadoop #690); `_cluster/*`, `_nodes/*` → 404 (OpenMetadata #27599, Vector #16252);
- `refresh=true` → 400 `status_exception` "true refresh policy is not supported." (opensearch-ruby
  #131);
- TIMESERIES/VECTOR: 400 `illegal_argument_exception` "Document ID is not supported in
  create/index operation request" per bulk item (opensearch-spark #1012, opensearch-py #792,
  langchainjs #4229).

Not emulated (unknown or irrelevant here): the exact 403 body Serverless sends for auth failures
(the proxy uses the domain's `{"message": ...}` shape), quotas, `wait_for` refresh.
"""

from __future__ import annotations

import json
import re
import threading

from sigv4_verify import gunzip_or_none

DOC_ID_REFUSED = "Document ID is not supported in create/index operation request"
SEARCH, TIMESERIES, VECTOR = "search", "timeseries", "vector"
COLLECTION_TYPES = (SEARCH, TIMESERIES, VECTOR)

_IDX = r"/[^/_][^/]*"  # an index (or comma list / pattern); never starts with '_'
_ALLOWED = [
    (("PUT", "GET", "HEAD", "DELETE"), rf"{_IDX}/?"),
    (("GET", "PUT", "POST"), rf"{_IDX}/_mappings?(/.*)?"),
    (("GET", "PUT"), rf"{_IDX}/_settings?(/.*)?"),
    (("GET",), r"/_cat/indices(/.*)?|/_mappings?|/_resolve/index/.+"),
    (("POST", "PUT"), rf"({_IDX})?/_bulk"),
    (("POST",), rf"{_IDX}/_doc/?"),
    (("GET", "HEAD", "DELETE"), rf"{_IDX}/_doc/[^/]+"),
    (("GET", "HEAD"), rf"{_IDX}/_source/[^/]+"),
    (("GET", "POST"), rf"({_IDX})?/(_search|_msearch|_count|_mget|_field_caps|_analyze|_validate/query)"
                      rf"|{_IDX}/_explain/[^/]+|/_search/scroll|/_search/point_in_time|/_pit"),
    (("DELETE",), r"/_search/scroll|/_search/point_in_time"),
    (("GET", "POST", "PUT", "DELETE", "HEAD"), r"/_aliases|(/[^/_][^/]*)?/_alias(es)?(/.*)?"
                                               r"|/_index_template(/.*)?|/_template(/.*)?"),
]
# Writes that name a document id: SEARCH collections only.
_ID_WRITES = [(("PUT", "POST"), rf"{_IDX}/_create/[^/]+"), (("PUT",), rf"{_IDX}/_doc/[^/]+"),
              (("POST",), rf"{_IDX}/_update/[^/]+")]


def _matches(table, method: str, path: str) -> bool:
    return any(method in methods and re.fullmatch(rx, path) for methods, rx in table)


def _error_body(status: int, type_: str, reason: str) -> bytes:
    err = {"type": type_, "reason": reason}
    return json.dumps({"error": {"root_cause": [err], **err}, "status": status}).encode()


class Response:
    def __init__(self, status: int, body: bytes = b"", content_type: str | None = None):
        self.status, self.body, self.content_type = status, body, content_type


class BulkPlan:
    """A `_bulk` whose id-carrying items Serverless refuses: what to forward, and how to answer."""

    def __init__(self, forward_body: bytes | None, refused: dict[int, dict], total: int):
        self.forward_body = forward_body  # None: nothing left to forward
        self.refused = refused  # position -> response item
        self.total = total

    def merge(self, upstream: bytes | None) -> bytes:
        up = json.loads(upstream) if upstream else {"took": 0, "errors": False, "items": []}
        forwarded = iter(up.get("items", []))
        items = [self.refused[i] if i in self.refused else next(forwarded, {}) for i in range(self.total)]
        return json.dumps({"took": up.get("took", 0), "errors": True, "items": items}).encode()


class Serverless:
    def __init__(self, collection_type: str = SEARCH):
        self.collection_type = collection_type
        self.stats = {"not_found": 0, "refresh_refused": 0, "document_id_refused": 0, "bulk_rewritten": 0}
        self._lock = threading.Lock()

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def answer(self, method: str, path: str, query: str) -> Response | None:
        """A response Serverless gives without touching the data, or None to go on."""
        path = re.sub(r"/+", "/", path) or "/"
        id_write = _matches(_ID_WRITES, method, path)
        if not (_matches(_ALLOWED, method, path) or id_write):
            self._count("not_found")
            return Response(404)
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        if "refresh" in params and params["refresh"] in ("", "true"):
            self._count("refresh_refused")
            return Response(400, _error_body(400, "status_exception", "true refresh policy is not supported."),
                            "application/json; charset=UTF-8")
        if id_write and self.collection_type != SEARCH:
            self._count("document_id_refused")
            return Response(400, _error_body(400, "illegal_argument_exception", DOC_ID_REFUSED),
                            "application/json; charset=UTF-8")
        return None

    def plan_bulk(self, path: str, headers: dict[str, str], body: bytes) -> BulkPlan | None:
        """None when the request goes upstream unchanged (SEARCH, or no item carries an _id)."""
        if self.collection_type == SEARCH or not re.fullmatch(r"(/[^/]+)?/_bulk", path.rstrip("/")):
            return None
        plain = gunzip_or_none(body) if "gzip" in headers.get("content-encoding", "") else body
        if plain is None:
            return None  # not decodable here: let the engine answer
        default_index = path.strip("/").split("/")[0] if path.strip("/") != "_bulk" else None
        lines = plain.split(b"\n")
        kept: list[bytes] = []
        refused: dict[int, dict] = {}
        pos = i = 0
        while i < len(lines):
            if not lines[i].strip():
                i += 1
                continue
            try:
                action = json.loads(lines[i])
                op, meta = next(iter(action.items()))
            except (ValueError, StopIteration, AttributeError):
                return None
            has_source = op in ("index", "create", "update")
            chunk = lines[i:i + (2 if has_source else 1)]
            i += len(chunk)
            if op in ("index", "create") and isinstance(meta, dict) and "_id" in meta:
                refused[pos] = {op: {"_index": meta.get("_index", default_index), "_id": meta["_id"], "status": 400,
                                     "error": {"type": "illegal_argument_exception", "reason": DOC_ID_REFUSED}}}
            else:
                kept.extend(chunk)
            pos += 1
        if not refused:
            return None
        self._count("document_id_refused", len(refused))
        self._count("bulk_rewritten")
        return BulkPlan(b"\n".join(kept) + b"\n" if kept else None, refused, pos)
