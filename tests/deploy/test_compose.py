"""docker-compose.yml: schema, wiring, the worker's required variables, and the LocalStack init
script run for real against the local stack's LocalStack."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, known_vars, required_vars

COMPOSE = ROOT / "docker-compose.yml"
INIT_DIR = ROOT / "deploy" / "localstack-init"
INIT_SCRIPT = INIT_DIR / "01-f4a-resources.sh"
# The Compose Specification schema as shipped by Debian's docker-compose 1.29.2
# (/usr/lib/python3/dist-packages/compose/config/compose_spec.json, Apache-2.0).
SCHEMA = Path(__file__).with_name("compose_spec.json")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_schema(compose):
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft201909Validator(schema).validate(compose)


def test_docker_compose_config():
    exe = shutil.which("docker-compose")
    if not exe:
        pytest.skip("docker-compose not installed (apt-get install docker-compose); schema test still ran")
    r = subprocess.run([exe, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr


def test_worker_has_every_required_variable(compose, config_table):
    worker = compose["services"]["worker"]
    env = env_of(worker)
    missing = required_vars(config_table) - {k for k, v in env.items() if v}
    assert not missing, f"worker lacks required {sorted(missing)}"
    unknown = set(env) - known_vars(config_table) - {"AWS_ENDPOINT_URL", "AWS_REGION"}
    assert not unknown, f"not in README's configuration table: {sorted(unknown)}"
    services = compose["services"]
    host = lambda url: urllib.parse.urlsplit(url).hostname
    assert host(env["AWS_ENDPOINT_URL"]) == "localstack"
    assert host(env["SQS_QUEUE_URL"]) == "localstack"
    assert host(env["ES_URL"]) == "elasticsearch"
    assert host(env["OTEL_EXPORTER_OTLP_ENDPOINT"]) == "jaeger" and env["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4318")
    assert env_of(services["jaeger"]).get("COLLECTOR_OTLP_ENABLED") == "true"
    # The queue the worker reads is the one the init script creates.
    assert env["SQS_QUEUE_URL"].rsplit("/", 1)[1] == env_of(services["localstack"])["F4A_NAME"]


def test_worker_built_from_dockerfile_with_health_check(compose):
    worker = compose["services"]["worker"]
    assert (ROOT / worker["build"]["context"] / worker["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"
    assert worker["healthcheck"]["test"][-1] == "healthcheck"
    assert worker.get("read_only") is True
    grace = int(re.fullmatch(r"(\d+)s", worker["stop_grace_period"]).group(1))
    assert grace >= int(env_of(worker)["SHUTDOWN_TIMEOUT_SECS"]) + 5


def test_depends_on_conditions_have_health_checks(compose):
    services = compose["services"]
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert spec["condition"] in conditions
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy but it has no health check"
    worker = services["worker"]["depends_on"]
    assert worker["localstack"]["condition"] == worker["elasticsearch"]["condition"] == "service_healthy"
    assert services["producer"]["depends_on"]["localstack"]["condition"] == "service_healthy"
    assert services["kibana"]["depends_on"]["elasticsearch"]["condition"] == "service_healthy"


def test_elasticsearch_security_and_heap_are_explicit(compose):
    env = env_of(compose["services"]["elasticsearch"])
    assert env["xpack.security.enabled"] == "false"
    assert env["discovery.type"] == "single-node"
    heap = re.search(r"-Xmx(\d+)([mg])", env["ES_JAVA_OPTS"])
    assert heap and int(heap.group(1)) * (1024 if heap.group(2) == "g" else 1) <= 1024
    readme = (ROOT / "README.md").read_text()
    assert re.search(r"security (is )?\*?\*?off", readme, re.I), "README says security is off"


def test_localstack_init_and_producer_wiring(compose):
    ls = compose["services"]["localstack"]
    assert f"./{INIT_DIR.relative_to(ROOT)}:/etc/localstack/init/ready.d:ro" in ls["volumes"]
    assert set(ls["environment"]["SERVICES"].split(",")) >= {"s3", "sqs", "firehose"}
    ready_file = re.search(r'READY_FILE="\$\{F4A_READY_FILE:-([^}]+)\}"', INIT_SCRIPT.read_text()).group(1)
    assert ready_file in " ".join(ls["healthcheck"]["test"])
    assert os.access(INIT_SCRIPT, os.X_OK)
    producer = compose["services"]["producer"]
    script = producer["command"][0]
    for fixture in re.findall(r"fixtures/[\w.-]+", script):
        assert (ROOT / fixture).is_file(), fixture
    assert "--stream f4a-indexer" in script and "--key \"data/" in script


# ---------------------------------------------------------------- init script, for real


def _localstack() -> str:
    url = os.environ.get("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    import urllib.request

    try:
        urllib.request.urlopen(f"{url}/_localstack/health", timeout=3).read()
    except OSError as e:
        pytest.skip(f"LocalStack not reachable at {url} ({e}); run `scripts/stack.sh start`")
    return url


def test_init_script_creates_the_pipeline_idempotently(tmp_path):
    url = _localstack()
    aws = Path(sys.executable).parent / "aws"
    if not aws.exists():
        pytest.skip("AWS CLI not in the venv (scripts/stack.sh install adds it)")
    import boto3

    name = f"f4a-init-{uuid.uuid4().hex[:8]}"
    ready = tmp_path / "ready"
    env = {**os.environ, "AWSLOCAL": f"{aws} --endpoint-url={url}", "F4A_NAME": name,
           "F4A_READY_FILE": str(ready), "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "PATH": f"{aws.parent}:{os.environ['PATH']}"}
    kw = dict(endpoint_url=url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    s3, sqs, fh = (boto3.client(s, **kw) for s in ("s3", "sqs", "firehose"))
    try:
        for _ in range(2):  # idempotent
            r = subprocess.run(["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=180)
            assert r.returncode == 0, r.stderr
            assert ready.exists()
        queue_url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        assert attrs["VisibilityTimeout"] == "300"
        redrive = json.loads(attrs["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"].endswith(f":{name}-dlq") and int(redrive["maxReceiveCount"]) == 5
        (qc,) = s3.get_bucket_notification_configuration(Bucket=name)["QueueConfigurations"]
        assert qc["QueueArn"] == attrs["QueueArn"] and qc["Events"] == ["s3:ObjectCreated:*"]
        desc = fh.describe_delivery_stream(DeliveryStreamName=name)["DeliveryStreamDescription"]
        assert desc["DeliveryStreamStatus"] == "ACTIVE"
        dest = desc["Destinations"][0]["ExtendedS3DestinationDescription"]
        assert dest["CompressionFormat"] == "GZIP" and dest["Prefix"] == "data/"
        # End to end through LocalStack: a record sent to Firehose lands under data/ and is announced on the queue.
        sqs.purge_queue(QueueUrl=queue_url)
        fh.put_record_batch(DeliveryStreamName=name, Records=[{"Data": b'{"a":1}\n'}])
        deadline, keys = time.time() + 30, []
        while time.time() < deadline and not keys:
            msgs = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=2, MaxNumberOfMessages=10).get("Messages", [])
            for m in msgs:
                for rec in json.loads(m["Body"]).get("Records", []):
                    keys.append(rec["s3"]["object"]["key"])
        assert keys and all(k.startswith("data/") for k in keys), keys
    finally:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "localaws.py"), "teardown", "--name", name],
                       env={**env, "AWS_ENDPOINT_URL": url}, capture_output=True, timeout=120)


def test_shell_scripts_parse():
    for script in (INIT_SCRIPT, ROOT / "tests" / "deploy" / "container_test.sh"):
        r = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert r.returncode == 0, f"{script}: {r.stderr}"
