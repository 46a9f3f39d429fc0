"""deploy/cloudformation.yaml: cfn-lint, and the properties the pipeline depends on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DOMAIN, FLEET, ROOT, resolve_template

TEMPLATE = ROOT / "deploy" / "cloudformation.yaml"


def cfn_lint(path: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "cfn-lint"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cfnlint"]
    return subprocess.run([*cmd, *args, "--", str(path)], capture_output=True, text=True, timeout=300)


def resources(t: dict, typ: str) -> dict[str, dict]:
    return {k: v for k, v in t["Resources"].items() if v["Type"] == typ}


def one(t: dict, typ: str) -> tuple[str, dict]:
    found = resources(t, typ)
    assert len(found) == 1, f"expected one {typ}, found {list(found)}"
    return next(iter(found.items()))


def statements(role: dict) -> list[dict]:
    out = []
    for pol in role["Properties"].get("Policies", []):
        st = pol["PolicyDocument"]["Statement"]
        out += st if isinstance(st, list) else [st]
    return out


def as_list(x) -> list:
    return x if isinstance(x, list) else [x]


def test_cfn_lint_clean_including_informational():
    r = cfn_lint(TEMPLATE, "--include-checks", "I")
    assert r.returncode == 0, r.stdout + r.stderr


def test_cfn_lint_catches_a_bad_template(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TEMPLATE.read_text().replace('Cpu: "256"', 'Cpu: "300"', 1))
    r = cfn_lint(bad)
    assert r.returncode != 0 and "300" in r.stdout


def test_firehose_gzip_hourly_into_bucket(cfn_template):
    _, fh = one(cfn_template, "AWS::KinesisFirehose::DeliveryStream")
    dest = fh["Properties"]["ExtendedS3DestinationConfiguration"]
    assert dest["CompressionFormat"] == "GZIP"
    assert "!{timestamp:yyyy/MM/dd/HH}" in dest["Prefix"]
    assert dest["ErrorOutputPrefix"].split("/")[0] != dest["Prefix"].split("/")[0], "errors outside the notified prefix"
    bucket_name, _ = one(cfn_template, "AWS::S3::Bucket")
    assert dest["BucketARN"] == {"Fn::GetAtt": [bucket_name, "Arn"]}


def test_queue_redrive_and_visibility_match_the_worker(cfn_template):
    queues = resources(cfn_template, "AWS::SQS::Queue")
    assert len(queues) == 2
    (main_name, main), = [(k, q) for k, q in queues.items() if "RedrivePolicy" in q["Properties"]]
    (dlq_name,) = set(queues) - {main_name}
    redrive = main["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dlq_name, "Arn"]}
    assert "maxReceiveCount" in redrive
    # One parameter feeds both the queue and the worker's SQS_VISIBILITY_TIMEOUT_SECONDS.
    _, td = one(cfn_template, "AWS::ECS::TaskDefinition")
    worker = td["Properties"]["ContainerDefinitions"][0]
    env = {e["Name"]: e["Value"] for e in worker["Environment"]}
    assert main["Properties"]["VisibilityTimeout"] == env["SQS_VISIBILITY_TIMEOUT_SECONDS"]
    assert env["SQS_QUEUE_URL"] == {"Ref": main_name}


def test_s3_notifies_the_queue_which_allows_it(cfn_template):
    bucket_name, bucket = one(cfn_template, "AWS::S3::Bucket")
    (queue_name,) = [k for k, q in resources(cfn_template, "AWS::SQS::Queue").items() if "RedrivePolicy" in q["Properties"]]
    (qc,) = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert qc["Event"] == "s3:ObjectCreated:*"
    assert qc["Queue"] == {"Fn::GetAtt": [queue_name, "Arn"]}
    policy_name, policy = one(cfn_template, "AWS::SQS::QueuePolicy")
    assert policy_name in as_list(bucket.get("DependsOn", [])), "S3 validates the destination when the notification is set"
    (st,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert st["Principal"] == {"Service": "s3.amazonaws.com"} and st["Action"] == "sqs:SendMessage"
    assert "aws:SourceArn" in st["Condition"]["ArnLike"]


# The template deployed with the defaults, with the fleet budget, and with a domain via SigV4.
VARIANTS = {"defaults": {}, "fleet": FLEET, "domain": DOMAIN, "fleet+domain": {**FLEET, **DOMAIN}}


@pytest.fixture(params=list(VARIANTS), scope="module")
def deployed(request, cfn_template) -> tuple[dict, dict]:
    given = VARIANTS[request.param]
    return resolve_template(cfn_template, given), given


def test_least_privilege_roles(deployed):
    cfn_template, given = deployed
    roles = resources(cfn_template, "AWS::IAM::Role")
    # Actions without resource-level permissions.
    star_ok = {
        "ecr:GetAuthorizationToken", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
        "xray:GetSamplingRules", "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries",
    }
    for name, role in roles.items():
        assert not role["Properties"].get("ManagedPolicyArns"), f"{name}: inline least-privilege policies only"
        for st in statements(role):
            assert st["Effect"] == "Allow"
            actions = as_list(st["Action"])
            assert not any(a == "*" or a.endswith(":*") for a in actions), (name, actions)
            if "*" in as_list(st["Resource"]):
                assert set(actions) <= star_ok, f"{name}: Resource * for {actions}"
    _, td = one(cfn_template, "AWS::ECS::TaskDefinition")
    task_role = roles[td["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]]
    task_actions = {a for st in statements(task_role) for a in as_list(st["Action"])}
    expected = {
        "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
        "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket",
        "logs:CreateLogStream", "logs:PutLogEvents",  # the collector's EMF metrics
    }
    if "FleetDocsPerSec" in given:
        expected |= FLEET_ACTIONS
    if "OpenSearchDomainArn" in given:
        expected |= {"es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost"}
    assert task_actions - star_ok == expected
    logs_st = [st for st in statements(task_role) if any(a.startswith("logs:") for a in as_list(st["Action"]))]
    assert logs_st and all(st["Resource"] == {"Fn::GetAtt": ["MetricsLogGroup", "Arn"]} for st in logs_st)
    exec_role = roles[td["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"][0]]
    secret_st = [st for st in statements(exec_role) if "secretsmanager:GetSecretValue" in as_list(st["Action"])]
    if "OpenSearchDomainArn" in given:
        assert not secret_st, "the task role signs: no secret to read"
    else:
        assert secret_st and all(st["Resource"] == {"Ref": "EsApiKeySecretArn"} for st in secret_st)


def test_service_two_azs_circuit_breaker(cfn_template):
    params = cfn_template["Parameters"]
    _, svc = one(cfn_template, "AWS::ECS::Service")
    p = svc["Properties"]
    assert p["LaunchType"] == "FARGATE"
    breaker = p["DeploymentConfiguration"]["DeploymentCircuitBreaker"]
    assert breaker == {"Enable": True, "Rollback": True}
    subnets = p["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"]
    refs = [s["Ref"] for s in subnets]
    assert len(set(refs)) == 2 and all(params[r]["Type"] == "AWS::EC2::Subnet::Id" for r in refs)
    _, td = one(cfn_template, "AWS::ECS::TaskDefinition")
    for c in td["Properties"]["ContainerDefinitions"]:
        group = c["LogConfiguration"]["Options"]["awslogs-group"]
        assert group["Ref"] in resources(cfn_template, "AWS::Logs::LogGroup")


def test_autoscaling_tracks_backlog_per_task(cfn_template):
    target_name, target = one(cfn_template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["Properties"]["ScalableDimension"] == "ecs:service:DesiredCount"
    assert target["Properties"]["MinCapacity"] == {"Ref": "MinTasks"}
    assert cfn_template["Parameters"]["MinTasks"]["MinValue"] >= 1, "backlog / tasks needs a task"
    _, policy = one(cfn_template, "AWS::ApplicationAutoScaling::ScalingPolicy")
    p = policy["Properties"]
    assert p["PolicyType"] == "TargetTrackingScaling" and p["ScalingTargetId"] == {"Ref": target_name}
    metrics = p["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]["Metrics"]
    by_id = {m["Id"]: m for m in metrics}
    (out,) = [m for m in metrics if m.get("ReturnData")]
    queue = [m for m in metrics if m.get("MetricStat", {}).get("Metric", {}).get("MetricName") == "ApproximateNumberOfMessagesVisible"]
    tasks = [m for m in metrics if m.get("MetricStat", {}).get("Metric", {}).get("MetricName") == "RunningTaskCount"]
    assert len(queue) == 1 and len(tasks) == 1
    assert out["Expression"].replace(" ", "") == f"{queue[0]['Id']}/{tasks[0]['Id']}"
    assert set(by_id) == {queue[0]["Id"], tasks[0]["Id"], out["Id"]}
    # RunningTaskCount is published by Container Insights only.
    _, cluster = one(cfn_template, "AWS::ECS::Cluster")
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["Properties"]["ClusterSettings"]


def test_parameters_example_covers_the_required_parameters(cfn_template):
    import json

    given = {p["ParameterKey"]: p["ParameterValue"] for p in json.loads((ROOT / "deploy" / "parameters.example.json").read_text())}
    params = cfn_template["Parameters"]
    assert set(given) <= set(params), set(given) - set(params)
    assert {k for k, v in params.items() if "Default" not in v} <= set(given)
    for k, v in given.items():
        if "AllowedValues" in params[k]:
            assert v in [str(a) for a in params[k]["AllowedValues"]], k


# ---------------------------------------------------------------- the fleet budget's table

FLEET_SOURCE = ROOT / "src" / "sink" / "fleet" / "dynamo.rs"
# Called by DynamoTable::create only, when the table is missing: the stack creates it.
CREATE_ONLY = {"dynamodb:CreateTable", "dynamodb:UpdateTimeToLive"}


def fleet_calls() -> set[str]:
    """The DynamoDB operations src/sink/fleet/dynamo.rs calls (`.client.put_item()` ...)."""
    src = FLEET_SOURCE.read_text()
    ops = re.findall(r"\.client\s*\.(\w+)\(\)", src)
    assert ops, "no DynamoDB calls found: has the client moved?"
    return {"dynamodb:" + "".join(w.capitalize() for w in op.split("_")) for op in ops}


FLEET_ACTIONS = fleet_calls() - CREATE_ONLY


def test_fleet_actions_are_what_the_code_calls():
    calls = fleet_calls()
    assert CREATE_ONLY <= calls, "the worker still creates a missing table"
    assert FLEET_ACTIONS == {"dynamodb:DescribeTable", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:DeleteItem"}


def fleet_table_attrs() -> dict[str, str]:
    src = FLEET_SOURCE.read_text()
    ttl = re.search(r'TimeToLiveSpecification::builder\(\)\s*\.attribute_name\("(\w+)"\)', src).group(1)
    hash_key = re.search(r'key\("(\w+)", KeyType::Hash\)', src).group(1)
    range_key = re.search(r'key\("(\w+)", KeyType::Range\)', src).group(1)
    return {"ttl": ttl, "hash": hash_key, "range": range_key}


def test_fleet_table_on_demand_with_ttl_only_with_a_budget(cfn_template):
    assert not resources(resolve_template(cfn_template), "AWS::DynamoDB::Table"), "per-task mode: no table"
    t = resolve_template(cfn_template, FLEET)
    name, table = one(t, "AWS::DynamoDB::Table")
    p = table["Properties"]
    attrs = fleet_table_attrs()
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["TimeToLiveSpecification"] == {"AttributeName": attrs["ttl"], "Enabled": True}
    assert p["KeySchema"] == [{"AttributeName": attrs["hash"], "KeyType": "HASH"},
                              {"AttributeName": attrs["range"], "KeyType": "RANGE"}]
    assert {a["AttributeName"]: a["AttributeType"] for a in p["AttributeDefinitions"]} == {attrs["hash"]: "S", attrs["range"]: "S"}
    # The task role may use it, and only it.
    task_role = t["Resources"]["TaskRole"]
    fleet_st = [st for st in statements(task_role) if any(a.startswith("dynamodb:") for a in as_list(st["Action"]))]
    assert fleet_st and all(st["Resource"] == {"Fn::GetAtt": [name, "Arn"]} for st in fleet_st)
    assert {a for st in fleet_st for a in as_list(st["Action"])} == FLEET_ACTIONS


def test_domain_policy_matches_the_standalone_file(cfn_template):
    doc = json.loads((ROOT / "deploy" / "iam-policy-opensearch-domain.json").read_text())
    (want,) = doc["Statement"]
    assert not [st for st in statements(resolve_template(cfn_template)["Resources"]["TaskRole"])
                if any(a.startswith("es:") for a in as_list(st["Action"]))]
    role = resolve_template(cfn_template, DOMAIN)["Resources"]["TaskRole"]
    (st,) = [st for st in statements(role) if any(a.startswith("es:") for a in as_list(st["Action"]))]
    assert set(as_list(st["Action"])) == set(as_list(want["Action"]))
    assert st["Resource"] == {"Fn::Sub": "${OpenSearchDomainArn}/*"}, "every path of that one domain"


def test_api_key_xor_domain_rules(cfn_template):
    rules = cfn_template["Rules"]
    conds = {json.dumps(r["RuleCondition"], sort_keys=True): r["Assertions"] for r in rules.values()}
    empty = {"Fn::Equals": [{"Ref": "OpenSearchDomainArn"}, ""]}
    assert json.dumps(empty, sort_keys=True) in conds and json.dumps({"Fn::Not": [empty]}, sort_keys=True) in conds


def test_iam_policy_json_has_the_fleet_statement():
    doc = json.loads((ROOT / "deploy" / "iam-policy.json").read_text())
    (st,) = [s for s in doc["Statement"] if s["Sid"] == "FleetBudgetTable"]
    assert set(as_list(st["Action"])) == FLEET_ACTIONS
    assert st["Resource"] == "arn:aws:dynamodb:${Region}:${AccountId}:table/${FleetTable}"
