"""The task-role policies for a cluster reached with SigV4 (ES_AUTH=sigv4): an Amazon OpenSearch
Service domain (es:ESHttp*) or an OpenSearch Serverless collection (aoss:APIAccessAll), each the
least the worker's requests need, on one resource, and documented in the README."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> dict:
    doc = json.loads((ROOT / "deploy" / name).read_text())
    assert doc["Version"] == "2012-10-17"
    return doc


def actions(st: dict) -> set[str]:
    a = st["Action"]
    return set([a] if isinstance(a, str) else a)


def test_domain_policy_allows_only_the_http_methods_the_worker_uses():
    (st,) = load("iam-policy-opensearch-domain.json")["Statement"]
    assert st["Effect"] == "Allow"
    # GET / and _cat (identity, probe), HEAD, POST _bulk; never PUT/DELETE (the worker creates
    # indices by writing to them) and never es:* or the control plane.
    assert actions(st) == {"es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost"}
    assert re.fullmatch(r"arn:aws:es:\$\{Region\}:\$\{AccountId\}:domain/\$\{DomainName\}/\*", st["Resource"])


def test_serverless_policy_is_api_access_on_one_collection():
    (st,) = load("iam-policy-opensearch-serverless.json")["Statement"]
    assert st["Effect"] == "Allow"
    assert actions(st) == {"aoss:APIAccessAll"}
    assert re.fullmatch(r"arn:aws:aoss:\$\{Region\}:\$\{AccountId\}:collection/\$\{CollectionId\}", st["Resource"])


def test_readme_names_both_policies_and_the_variables():
    text = (ROOT / "README.md").read_text()
    for needle in ("iam-policy-opensearch-domain.json", "iam-policy-opensearch-serverless.json",
                   "ES_AUTH=sigv4", "ES_AWS_SERVICE=aoss", "ES_DOCUMENT_ID=none"):
        assert needle in text, needle
