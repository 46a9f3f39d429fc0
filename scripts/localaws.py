#!/usr/bin/env python3
"""Helpers for the local stack (LocalStack + the search engine) used by demo.sh, benches and by hand.

Run with the stack venv's python (it has boto3 from LocalStack's deps):

    eval "$(scripts/stack.sh env)"
    $F4A_VENV/bin/python scripts/localaws.py setup --name f4a-demo
    $F4A_VENV/bin/python scripts/localaws.py send-firehose --stream f4a-demo --file fixtures/te-process.ndjson.gz
    $F4A_VENV/bin/python scripts/localaws.py wait-objects --bucket f4a-demo --since 1700000000 --expect-records 1000
    $F4A_VENV/bin/python scripts/localaws.py counts --es http://127.0.0.1:9200

Every subcommand is idempotent. Endpoint/credentials come from AWS_ENDPOINT_URL etc.
(defaults: LocalStack on 127.0.0.1:4566, region us-east-1, test/test).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import time
import urllib.error
import urllib.request
import zlib

import boto3
from botocore.config import Config

REGION = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
ENDPOINT = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
ACCOUNT = "000000000000"  # LocalStack's default account


def client(service: str):
    return boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
        config=Config(retries={"max_attempts": 5, "mode": "standard"}),
    )


def log(msg: str) -> None:
    print(f"[localaws] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- setup


def ensure_bucket(s3, bucket: str) -> None:
    try:
        s3.head_bucket(Bucket=bucket)
    except s3.exceptions.ClientError:
        # us-east-1 must not send a LocationConstraint
        if REGION == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        log(f"created bucket {bucket}")


def ensure_queues(sqs, name: str, bucket: str, max_receive: int, visibility: int) -> tuple[str, str, str]:
    # create_queue is idempotent when attributes match; set_queue_attributes
    # afterwards so a re-run with other values converges instead of failing.
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowS3ObjectCreated",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
            }
        ],
    }
    sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive)}),
            "Policy": json.dumps(policy),
        },
    )
    return url, arn, dlq_url


def ensure_notification(s3, bucket: str, queue_arn: str, prefix: str) -> None:
    cfg = {"Id": "f4a-object-created", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"]}
    if prefix:
        cfg["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}
    # Each put_* makes S3 (AWS and LocalStack alike) send an "s3:TestEvent"
    # message to the queue, so only write it when it actually changes.
    current = s3.get_bucket_notification_configuration(Bucket=bucket).get("QueueConfigurations", [])
    if current == [cfg]:
        return
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [cfg]})
    log(f"set ObjectCreated notification {bucket} -> {queue_arn} (S3 sends one s3:TestEvent message)")


def ensure_role(iam, name: str, bucket: str) -> str:
    # LocalStack does not enforce IAM, but the Firehose API requires a RoleARN;
    # create a real role so the same code reads correctly against AWS.
    role = f"{name}-firehose"
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "firehose.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }
    try:
        arn = iam.get_role(RoleName=role)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
        log(f"created role {role}")
    iam.put_role_policy(
        RoleName=role,
        PolicyName="s3-write",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": ["s3:PutObject", "s3:GetBucketLocation", "s3:ListBucket", "s3:AbortMultipartUpload"],
                        "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                    }
                ],
            }
        ),
    )
    return arn


def ensure_stream(fh, stream: str, bucket: str, role_arn: str, prefix: str, interval: int, size_mb: int) -> None:
    try:
        desc = fh.describe_delivery_stream(DeliveryStreamName=stream)["DeliveryStreamDescription"]
    except fh.exceptions.ResourceNotFoundException:
        fh.create_delivery_stream(
            DeliveryStreamName=stream,
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": role_arn,
                "BucketARN": f"arn:aws:s3:::{bucket}",
                "Prefix": prefix,
                "ErrorOutputPrefix": "firehose-errors/",
                "CompressionFormat": "GZIP",
                "BufferingHints": {"IntervalInSeconds": interval, "SizeInMBs": size_mb},
            },
        )
        log(f"created delivery stream {stream}")
        desc = fh.describe_delivery_stream(DeliveryStreamName=stream)["DeliveryStreamDescription"]
    deadline = time.time() + 60
    while desc["DeliveryStreamStatus"] != "ACTIVE":
        if time.time() > deadline:
            raise SystemExit(f"delivery stream {stream} not ACTIVE: {desc['DeliveryStreamStatus']}")
        time.sleep(1)
        desc = fh.describe_delivery_stream(DeliveryStreamName=stream)["DeliveryStreamDescription"]


def cmd_setup(a) -> None:
    bucket = a.bucket or a.name
    s3, sqs = client("s3"), client("sqs")
    ensure_bucket(s3, bucket)
    url, arn, dlq_url = ensure_queues(sqs, a.name, bucket, a.max_receive, a.visibility)
    ensure_notification(s3, bucket, arn, a.notify_prefix)
    out = {"bucket": bucket, "queue_url": url, "queue_arn": arn, "dlq_url": dlq_url}
    if not a.no_firehose:
        role_arn = ensure_role(client("iam"), a.name, bucket)
        ensure_stream(client("firehose"), a.stream or a.name, bucket, role_arn, a.prefix, a.buffer_seconds, a.buffer_mb)
        out["stream"] = a.stream or a.name
    print(json.dumps(out))


# ---------------------------------------------------------------- send


def read_records(path: str) -> list[bytes]:
    """Lines of an NDJSON file (gzip or plain), each returned with its trailing newline."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [line + b"\n" for line in data.split(b"\n") if line.strip()]


def cmd_send_firehose(a) -> None:
    fh = client("firehose")
    records = read_records(a.file)
    sent = 0
    for i in range(0, len(records), a.batch):
        pending = records[i : i + a.batch]
        for attempt in range(10):
            resp = fh.put_record_batch(DeliveryStreamName=a.stream, Records=[{"Data": r} for r in pending])
            if resp.get("FailedPutCount", 0) == 0:
                break
            # Only resend the failed entries (Firehose semantics).
            pending = [r for r, res in zip(pending, resp["RequestResponses"]) if "ErrorCode" in res]
            time.sleep(0.2 * (attempt + 1))
        else:
            raise SystemExit(f"put_record_batch kept failing for {len(pending)} records")
        sent += min(a.batch, len(records) - i)
    log(f"sent {sent} records from {a.file} to firehose stream {a.stream}")
    print(sent)


def cmd_put_object(a) -> None:
    key = a.key or os.path.basename(a.file)
    with open(a.file, "rb") as f:
        client("s3").put_object(Bucket=a.bucket, Key=key, Body=f.read())
    print(f"s3://{a.bucket}/{key}")


# ---------------------------------------------------------------- wait


def count_records(body: bytes) -> int:
    # Firehose GZIP objects may hold several gzip members; decompress them all.
    out = b""
    while body:
        d = zlib.decompressobj(wbits=31) if body[:2] == b"\x1f\x8b" else None
        if d is None:
            out += body
            break
        out += d.decompress(body)
        body = d.unused_data
    return sum(1 for line in out.split(b"\n") if line.strip())


def cmd_wait_objects(a) -> None:
    s3 = client("s3")
    deadline = time.time() + a.timeout
    seen: dict[str, int] = {}
    while True:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=a.bucket, Prefix=a.prefix):
            for obj in page.get("Contents", []):
                if obj["LastModified"].timestamp() < a.since or obj["Key"] in seen:
                    continue
                if obj["Key"].startswith("firehose-errors/"):
                    log(f"WARNING: firehose error object {obj['Key']}")
                body = s3.get_object(Bucket=a.bucket, Key=obj["Key"])["Body"].read()
                seen[obj["Key"]] = count_records(body)
                gz = "gzip" if body[:2] == b"\x1f\x8b" else "plain"
                print(f"s3://{a.bucket}/{obj['Key']}  {obj['Size']} bytes  {gz}  {seen[obj['Key']]} records", flush=True)
        total = sum(seen.values())
        if (a.expect_records and total >= a.expect_records) or (not a.expect_records and len(seen) >= a.min_objects):
            log(f"{len(seen)} objects, {total} records")
            return
        if time.time() > deadline:
            raise SystemExit(f"timeout: {len(seen)} objects / {total} records after {a.timeout}s")
        time.sleep(1)


# ---------------------------------------------------------------- queues


def queue_urls(sqs, name: str) -> list[str]:
    return [sqs.get_queue_url(QueueName=n)["QueueUrl"] for n in (name, f"{name}-dlq")]


def cmd_queue_stats(a) -> None:
    sqs = client("sqs")
    for url in queue_urls(sqs, a.name):
        attrs = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        print(f"{url}  visible={attrs['ApproximateNumberOfMessages']}  in-flight={attrs['ApproximateNumberOfMessagesNotVisible']}")


def cmd_peek(a) -> None:
    """Receive messages without deleting them (visibility 0 so they stay available)."""
    sqs = client("sqs")
    url = sqs.get_queue_url(QueueName=a.name)["QueueUrl"]
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0, WaitTimeSeconds=1).get("Messages", [])
    for m in msgs:
        body = json.loads(m["Body"])
        for r in body.get("Records", []):
            print(f"{r['eventName']}  s3://{r['s3']['bucket']['name']}/{r['s3']['object']['key']}  size={r['s3']['object'].get('size')}")
        if "Records" not in body:
            print(json.dumps(body)[:300])
    print(f"({len(msgs)} messages peeked)")


def cmd_purge(a) -> None:
    sqs = client("sqs")
    for url in queue_urls(sqs, a.name):
        try:
            sqs.purge_queue(QueueUrl=url)
        except sqs.exceptions.PurgeQueueInProgress:
            # Real SQS allows one purge per 60 s: drain by receive+delete instead.
            while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages"):
                sqs.delete_message_batch(
                    QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)]
                )
        log(f"purged {url}")


def cmd_teardown(a) -> None:
    bucket = a.bucket or a.name
    s3, sqs, fh, iam = client("s3"), client("sqs"), client("firehose"), client("iam")
    try:
        fh.delete_delivery_stream(DeliveryStreamName=a.stream or a.name)
    except fh.exceptions.ResourceNotFoundException:
        pass
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})
        s3.delete_bucket(Bucket=bucket)
    except s3.exceptions.NoSuchBucket:
        pass
    for n in (a.name, f"{a.name}-dlq"):
        try:
            sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=n)["QueueUrl"])
        except sqs.exceptions.QueueDoesNotExist:
            pass
    try:
        iam.delete_role_policy(RoleName=f"{a.name}-firehose", PolicyName="s3-write")
        iam.delete_role(RoleName=f"{a.name}-firehose")
    except iam.exceptions.NoSuchEntityException:
        pass
    log(f"removed {a.name}")


# ---------------------------------------------------------------- elasticsearch


def es_request(base: str, method: str, path: str, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base.rstrip("/") + path, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read().decode())


def es_get(base: str, path: str):
    return es_request(base, "GET", path)


def es_refresh(base: str, pattern: str) -> None:
    """A real engine makes new documents searchable only after a refresh (1 s by default)."""
    es_request(base, "POST", f"/{pattern}/_refresh?allow_no_indices=true&ignore_unavailable=true")


def es_indices(base: str, pattern: str) -> list[str]:
    try:
        return [r["index"] for r in es_get(base, f"/_cat/indices/{pattern}?format=json&h=index")]
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return []
        raise


def cmd_delete_indices(a) -> None:
    # By name: a wildcard DELETE is refused where action.destructive_requires_name is set.
    names = es_indices(a.es, a.pattern)
    if names:
        es_request(a.es, "DELETE", "/" + ",".join(names))
    log(f"deleted {len(names)} indices matching {a.pattern}")


def keyword_field(es: str, index: str, field: str) -> str:
    """The field to aggregate `field`'s strings on: `field.keyword` under dynamic mapping (text
    plus a keyword sub-field), `field` itself under the worker's index template (ES_SETUP, strings
    as keyword). Asked of the cluster; an engine without the field-mapping API gets the former."""
    try:
        m = es_get(es, f"/{index}/_mapping/field/{field}.keyword")
    except Exception:
        return f"{field}.keyword"
    found = any(v.get("mappings") for v in m.values() if isinstance(v, dict))
    return f"{field}.keyword" if found else field


def cmd_search(a) -> None:
    """Real searches over the demo data: an aggregation on the sensor records, a filtered,
    sorted query and a terms aggregation on the application logs."""
    es_refresh(a.es, a.pattern)
    data = a.pattern
    root = es_get(a.es, "/")
    v = root.get("version", {})
    name = f"{v.get('distribution', 'elasticsearch')} {v.get('number', '?')}"
    if "osmem" in json.dumps(root).lower():
        name = f"osmem (in-memory double of the OpenSearch {v.get('number', '?')} API)"
    print(f"engine: {name} at {a.es}\n")
    r = es_request(a.es, "POST", f"/{data}/_search", {
        "size": 0,
        "query": {"exists": {"field": "xmeas_7"}},
        "aggs": {"plant": {"terms": {"field": keyword_field(a.es, data, "plant")}, "aggs": {
            "fault": {"terms": {"field": "fault"}, "aggs": {
                "a_feed": {"avg": {"field": "xmeas_1"}},
                "pressure": {"avg": {"field": "xmeas_7"}},
                "pressure_max": {"max": {"field": "xmeas_7"}},
            }}}}},
    })
    print("Tennessee Eastman sensors, per plant and fault state (IDV 6 = A feed loss):")
    print(f"  {'plant':<8} {'fault':>5} {'samples':>8} {'avg A feed xmeas_1':>19} "
          f"{'avg reactor kPa xmeas_7':>24} {'max kPa':>8}")
    for p in r["aggregations"]["plant"]["buckets"]:
        for f in p["fault"]["buckets"]:
            print(f"  {p['key']:<8} {f['key']:>5} {f['doc_count']:>8} {f['a_feed']['value']:>19.4f} "
                  f"{f['pressure']['value']:>24.1f} {f['pressure_max']['value']:>8.1f}")
    r = es_request(a.es, "POST", f"/{data}/_search", {
        "size": 1,
        "query": {"bool": {"filter": [{"range": {"http.status": {"gte": 500}}}]}},
        "sort": [{"http.duration_ms": "desc"}],
        "aggs": {"service": {"terms": {"field": keyword_field(a.es, data, "service")}}},
        "_source": ["service", "message", "@timestamp"],
    })
    total = r["hits"]["total"]["value"] if isinstance(r["hits"]["total"], dict) else r["hits"]["total"]
    print(f"\napplication logs with HTTP status >= 500: {total}, per service: "
          + ", ".join(f"{b['key']} {b['doc_count']}" for b in r["aggregations"]["service"]["buckets"]))
    if r["hits"]["hits"]:
        h = r["hits"]["hits"][0]["_source"]
        print(f"  slowest of them: {h['service']}: {h['message']} at {h['@timestamp']}")
    r = es_request(a.es, "POST", f"/{data}/_search", {
        "size": 1, "query": {"match_phrase": {"message": a.text}}, "_source": ["message"],
    })
    total = r["hits"]["total"]["value"] if isinstance(r["hits"]["total"], dict) else r["hits"]["total"]
    example = r["hits"]["hits"][0]["_source"]["message"] if r["hits"]["hits"] else "-"
    print(f"full-text phrase {a.text!r} in message: {total} documents, e.g. {example!r}")


def cmd_counts(a) -> None:
    es_refresh(a.es, a.pattern)
    # _cat/indices?format=json works on ES, OpenSearch and osmem alike.
    try:
        rows = es_get(a.es, f"/_cat/indices/{a.pattern}?format=json&h=index,docs.count")
    except urllib.error.HTTPError as e:
        if e.code == 404:
            rows = []
        else:
            raise
    rows.sort(key=lambda r: r["index"])
    docs = dead = 0
    for r in rows:
        print(f"{r['index']:<32} {r['docs.count']:>8}")
        if r["index"].endswith("dead-letter"):
            dead += int(r["docs.count"])
        else:
            docs += int(r["docs.count"])
    print(f"{'documents (data indices)':<32} {docs:>8}")
    print(f"{'dead-letter entries':<32} {dead:>8}")
    if a.sample and rows:
        for r in rows:
            if r["index"].endswith("dead-letter") or int(r["docs.count"]) == 0:
                continue
            hit = es_get(a.es, f"/{r['index']}/_search?size=1")["hits"]["hits"]
            if hit:
                print(f"\nsample document from {r['index']} (_id {hit[0]['_id']}):")
                print(json.dumps(hit[0]["_source"], indent=2, sort_keys=True))
                break
        dl = [r for r in rows if r["index"].endswith("dead-letter") and int(r["docs.count"]) > 0]
        if dl:
            hit = es_get(a.es, f"/{dl[0]['index']}/_search?size=1")["hits"]["hits"]
            print(f"\nsample dead-letter entry from {dl[0]['index']}:")
            print(json.dumps(hit[0]["_source"], indent=2, sort_keys=True))
    if a.expect is not None and docs != a.expect:
        raise SystemExit(f"expected {a.expect} documents, found {docs}")
    if a.expect_dead_letter is not None and dead != a.expect_dead_letter:
        raise SystemExit(f"expected {a.expect_dead_letter} dead-letter entries, found {dead}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("setup", help="bucket + queue (+DLQ, notification) + firehose stream")
    s.add_argument("--name", required=True, help="queue name (DLQ is NAME-dlq); default for bucket/stream")
    s.add_argument("--bucket")
    s.add_argument("--stream")
    s.add_argument("--prefix", default="", help="firehose S3 prefix (default: none, keys start YYYY/)")
    s.add_argument("--notify-prefix", default="", help="only notify for keys with this prefix")
    s.add_argument("--max-receive", type=int, default=5)
    s.add_argument("--visibility", type=int, default=300)
    s.add_argument("--buffer-seconds", type=int, default=60)
    s.add_argument("--buffer-mb", type=int, default=1)
    s.add_argument("--no-firehose", action="store_true")
    s.set_defaults(fn=cmd_setup)

    s = sub.add_parser("send-firehose", help="put_record_batch each line of an NDJSON(.gz) file")
    s.add_argument("--stream", required=True)
    s.add_argument("--file", required=True)
    s.add_argument("--batch", type=int, default=500, help="records per call (Firehose max 500)")
    s.set_defaults(fn=cmd_send_firehose)

    s = sub.add_parser("put-object", help="upload a file as-is (e.g. a fixture) to trigger a notification")
    s.add_argument("--bucket", required=True)
    s.add_argument("--file", required=True)
    s.add_argument("--key")
    s.set_defaults(fn=cmd_put_object)

    s = sub.add_parser("wait-objects", help="wait for (firehose) objects newer than --since; print keys")
    s.add_argument("--bucket", required=True)
    s.add_argument("--prefix", default="")
    s.add_argument("--since", type=float, default=0, help="epoch seconds; ignore older objects")
    s.add_argument("--expect-records", type=int, default=0, help="wait until this many records landed")
    s.add_argument("--min-objects", type=int, default=1)
    s.add_argument("--timeout", type=float, default=120)
    s.set_defaults(fn=cmd_wait_objects)

    for name, fn, hlp in (
        ("queue-stats", cmd_queue_stats, "approximate message counts of NAME and NAME-dlq"),
        ("peek", cmd_peek, "show S3 event messages on NAME without consuming them"),
        ("purge", cmd_purge, "purge NAME and NAME-dlq"),
        ("teardown", cmd_teardown, "delete stream, bucket (with objects), queues, role"),
    ):
        s = sub.add_parser(name, help=hlp)
        s.add_argument("--name", required=True)
        if name == "teardown":
            s.add_argument("--bucket")
            s.add_argument("--stream")
        s.set_defaults(fn=fn)

    s = sub.add_parser("counts", help="document count per index, plus samples")
    s.add_argument("--es", default=os.environ.get("ES_URL", "http://127.0.0.1:9200"))
    s.add_argument("--pattern", default="f4a-*")
    s.add_argument("--sample", action="store_true", help="print one document and one dead-letter entry")
    s.add_argument("--expect", type=int, help="fail unless the data indices hold this many documents")
    s.add_argument("--expect-dead-letter", type=int, help="fail unless the dead-letter index holds this many")
    s.set_defaults(fn=cmd_counts)

    s = sub.add_parser("delete-indices", help="delete the indices matching a pattern (by name)")
    s.add_argument("--es", default=os.environ.get("ES_URL", "http://127.0.0.1:9200"))
    s.add_argument("--pattern", required=True)
    s.set_defaults(fn=cmd_delete_indices)

    s = sub.add_parser("search", help="aggregations and queries over the demo data")
    s.add_argument("--es", default=os.environ.get("ES_URL", "http://127.0.0.1:9200"))
    s.add_argument("--pattern", default="f4a-2*")
    s.add_argument("--text", default="user login ok", help="full-text phrase to find in message")
    s.set_defaults(fn=cmd_search)

    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
