"""deploy/cloudformation.yaml: cfn-lint, and the properties the pipeline depends on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT

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


def test_least_privilege_roles(cfn_template):
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
    assert task_actions - star_ok == {
        "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility",
        "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket",
        "logs:CreateLogStream", "logs:PutLogEvents",  # the collector's EMF metrics
    }
    logs_st = [st for st in statements(task_role) if any(a.startswith("logs:") for a in as_list(st["Action"]))]
    assert logs_st and all(st["Resource"] == {"Fn::GetAtt": ["MetricsLogGroup", "Arn"]} for st in logs_st)
    exec_role = roles[td["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"][0]]
    secret_st = [st for st in statements(exec_role) if "secretsmanager:GetSecretValue" in as_list(st["Action"])]
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
