"""ecs-task.json (and the task definition inside deploy/cloudformation.yaml) against the ECS
RegisterTaskDefinition API model, Fargate's rules and the worker's configuration contract."""

from __future__ import annotations

import re

import botocore.session
import pytest
from botocore.validate import ParamValidator

from conftest import (
    DOMAIN, FARGATE_SIZES, FLEET, NO_VALUE, ROOT, conditions, known_vars, literal_default, parameter_values,
    required_vars,
)

# Keys that `aws ecs describe-task-definition` returns but RegisterTaskDefinition does not take.
DESCRIBE_ONLY_KEYS = {
    "taskDefinitionArn", "revision", "status", "requiresAttributes", "compatibilities",
    "registeredAt", "registeredBy", "deregisteredAt",
}
SECRET_VARS = {"ES_API_KEY", "ES_PASSWORD", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
WORKER = "f4a-indexer"


def register_input_shape():
    model = botocore.session.get_session().get_service_model("ecs")
    return model.operation_model("RegisterTaskDefinition").input_shape


def strip_describe_keys(td: dict) -> dict:
    return {k: v for k, v in td.items() if k not in DESCRIBE_ONLY_KEYS}


def model_errors(value, shape, path="") -> list[str]:
    """What ParamValidator does not check: enums and max length/value/size."""
    errors = []
    t = shape.type_name
    meta = shape.metadata
    if t == "structure" and isinstance(value, dict):
        for k, v in value.items():
            if k in shape.members:
                errors += model_errors(v, shape.members[k], f"{path}.{k}")
    elif t == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: more than {meta['max']} items")
        for i, v in enumerate(value):
            errors += model_errors(v, shape.member, f"{path}[{i}]")
    elif t == "map" and isinstance(value, dict):
        for k, v in value.items():
            errors += model_errors(v, shape.value, f"{path}[{k}]")
    elif t == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            errors.append(f"{path}: {value!r} not one of {shape.enum}")
        if "max" in meta and len(value) > meta["max"]:
            errors.append(f"{path}: longer than {meta['max']}")
    elif t in ("integer", "long") and isinstance(value, int):
        if "max" in meta and value > meta["max"]:
            errors.append(f"{path}: {value} > {meta['max']}")
    return errors


# ---------------------------------------------------------------- the CloudFormation task definition


def _cfn_to_api(value, template: dict, given: dict[str, str] | None = None, keep_keys: bool = False,
                _ctx: tuple | None = None):
    """CloudFormation TaskDefinition properties -> RegisterTaskDefinition parameters: PascalCase
    keys become camelCase, Refs to parameters become their values (`given`, else the defaults),
    Fn::If takes the branch its condition chooses with those values (AWS::NoValue drops the key),
    Fn::FindInMap looks up the template's mappings, other intrinsics become placeholders."""
    if _ctx is None:
        values = parameter_values(template, given)
        _ctx = (values, conditions(template, values), template.get("Mappings", {}))
    values, conds, mappings = _ctx
    rec = lambda v, keep=False: _cfn_to_api(v, template, given, keep, _ctx)  # noqa: E731
    if isinstance(value, dict):
        if len(value) == 1:
            (k, v), = value.items()
            if k == "Ref":
                if v == "AWS::NoValue":
                    return NO_VALUE
                if v in values:
                    return values[v]
                return f"REF-{v}"
            if k == "Fn::If":
                name, yes, no = v
                return rec(yes if conds[name] else no, keep_keys)
            if k == "Fn::FindInMap":
                name, top, second = (rec(x) for x in v)
                return str(mappings[name][top][second])
            if k == "Fn::GetAtt":
                return f"GETATT-{'.'.join(v) if isinstance(v, list) else v}"
            if k == "Fn::Sub":
                return v if isinstance(v, str) else v[0]
            if k.startswith("Fn::"):
                return f"FN-{k}"
        out = {}
        for k, v in value.items():
            key = k if keep_keys else k[0].lower() + k[1:]
            # logConfiguration.options keys are driver options, kept verbatim.
            r = rec(v, k == "Options")
            if r is not NO_VALUE:
                out[key] = r
        return out
    if isinstance(value, list):
        return [x for x in (rec(v) for v in value) if x is not NO_VALUE]
    return value


def cfn_task_definition(template: dict, given: dict[str, str] | None = None) -> dict:
    tds = [r for r in template["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition"]
    assert len(tds) == 1
    return _cfn_to_api(tds[0]["Properties"], template, given)


# The template's task definition with the defaults, with the fleet budget, with a domain via SigV4.
VARIANTS = {"ecs-task.json": None, "cloudformation.yaml": {}, "cloudformation.yaml+fleet": FLEET,
            "cloudformation.yaml+domain": DOMAIN}


@pytest.fixture(params=list(VARIANTS), scope="module")
def task_def(request, ecs_task, cfn_template) -> dict:
    given = VARIANTS[request.param]
    return ecs_task if given is None else cfn_task_definition(cfn_template, given)


def worker(td: dict) -> dict:
    (c,) = [c for c in td["containerDefinitions"] if c["name"] == WORKER]
    return c


def env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("environment", [])}


# ---------------------------------------------------------------- tests


def test_valid_register_task_definition_request(task_def):
    shape = register_input_shape()
    params = strip_describe_keys(task_def)
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()
    assert model_errors(params, shape) == []


def test_validator_catches_mistakes():
    """The check above is not vacuous."""
    shape = register_input_shape()
    bad = {"family": "x", "containerDefinitions": [{"name": "a", "image": "b", "cpu": "256", "essentials": True}],
           "networkMode": "bridgeish"}
    report = ParamValidator().validate(bad, shape)
    text = report.generate_report()
    assert "essentials" in text and "cpu" in text
    assert model_errors(bad, shape) and "bridgeish" in model_errors(bad, shape)[0]


def test_fargate_arm64_size(task_def):
    assert task_def["networkMode"] == "awsvpc"
    assert task_def["requiresCompatibilities"] == ["FARGATE"]
    assert task_def["runtimePlatform"] == {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"}
    cpu, memory = int(task_def["cpu"]), int(task_def["memory"])
    assert (cpu, memory) == (256, 512)
    assert memory in FARGATE_SIZES[cpu], f"{cpu} CPU units cannot have {memory} MiB on Fargate"
    containers = task_def["containerDefinitions"]
    assert sum(c.get("cpu", 0) for c in containers) <= cpu
    assert sum(c.get("memory") or c.get("memoryReservation") or 0 for c in containers) <= memory
    for c in containers:
        for p in c.get("portMappings", []):
            assert p.get("hostPort", p["containerPort"]) == p["containerPort"], "awsvpc: hostPort must equal containerPort"


def test_fargate_size_table_sane():
    assert all(m % 512 == 0 for ms in FARGATE_SIZES.values() for m in ms)
    assert 512 in FARGATE_SIZES[256] and 4096 not in FARGATE_SIZES[256]


def test_roles_are_marked_placeholders(ecs_task):
    for key in ("taskRoleArn", "executionRoleArn"):
        arn = ecs_task[key]
        assert re.fullmatch(r"arn:aws:iam::ACCOUNT_ID:role/REPLACE_ME-[\w+=,.@-]+", arn), arn
    assert "REPLACE_ME" in worker(ecs_task)["image"] and "ACCOUNT_ID" in worker(ecs_task)["image"]


def test_every_container_read_only_and_logged(task_def):
    for c in task_def["containerDefinitions"]:
        assert c.get("readonlyRootFilesystem") is True, c["name"]
        log = c["logConfiguration"]
        assert log["logDriver"] == "awslogs", c["name"]
        assert {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= set(log["options"]), c["name"]


def test_worker_health_check_and_user_match_the_image(task_def):
    dockerfile = (ROOT / "Dockerfile").read_text()
    entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"\]', dockerfile, re.M).group(1)
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)[-1]
    c = worker(task_def)
    assert c["essential"] is True
    hc = c["healthCheck"]
    assert hc["command"] == ["CMD", entrypoint, "healthcheck"]
    assert 5 <= hc["interval"] <= 300 and 2 <= hc["timeout"] <= 60 and 1 <= hc["retries"] <= 10
    assert 0 <= hc["startPeriod"] <= 300 and hc["timeout"] < hc["interval"]
    assert c.get("user") == user
    health_port = int(env(c).get("HEALTH_ADDR", "0.0.0.0:8080").rsplit(":", 1)[1])
    assert health_port in [p["containerPort"] for p in c.get("portMappings", [])]


def test_stop_timeout_covers_graceful_drain(task_def, config_table, cfn_template):
    c = worker(task_def)
    shutdown = int(env(c).get("SHUTDOWN_TIMEOUT_SECS", literal_default(config_table["SHUTDOWN_TIMEOUT_SECS"])))
    assert shutdown + 5 <= c["stopTimeout"] <= 120, "Fargate allows at most 120 s"


def test_template_stop_timeout_covers_every_allowed_shutdown_timeout(cfn_template):
    c = worker(cfn_task_definition(cfn_template))
    assert cfn_template["Parameters"]["ShutdownTimeoutSecs"]["MaxValue"] + 5 <= c["stopTimeout"]


def test_environment_matches_readme(task_def, config_table):
    c = worker(task_def)
    names = [e["name"] for e in c["environment"]]
    assert len(names) == len(set(names)), "duplicate environment variable"
    values = env(c)
    secrets = {s["name"] for s in c.get("secrets", [])}
    unknown = (set(values) | secrets) - known_vars(config_table)
    assert not unknown, f"not in README's configuration table: {sorted(unknown)}"
    missing = required_vars(config_table) - set(values) - secrets
    assert not missing, f"required variables not set: {sorted(missing)}"
    tuning = {v for v in config_table if v.startswith(("RATE_LIMIT_", "BULK_"))}
    assert tuning - set(values) == set(), "every rate-limit and bulk variable is listed"
    for name, value in values.items():
        default = literal_default(config_table.get(name, ""))
        if name == "RATE_LIMIT_DOCS_PER_SEC" and values.get("FLEET_DOCS_PER_SEC"):
            assert value == "", "the worker refuses a per-task rate beside FLEET_DOCS_PER_SEC"
        elif name in ("RATE_LIMIT_BURST",):
            assert value in ("", values.get("RATE_LIMIT_DOCS_PER_SEC")), "burst defaults to one second of rate"
        elif default is not None and name in tuning | {"SQS_MAX_MESSAGES", "MAX_IN_FLIGHT_MESSAGES"}:
            assert value == default, f"{name}={value!r}, README default {default!r}"
        elif default is None and name in tuning:
            assert value == "", f"{name} has no literal default: use '' (unset)"


def test_cluster_credentials_come_from_secrets(task_def):
    c = worker(task_def)
    assert not SECRET_VARS & set(env(c)), "a secret in plain environment"
    secrets = {s["name"]: s["valueFrom"] for s in c.get("secrets", [])}
    if env(c).get("ES_AUTH") == "sigv4":
        assert not secrets, "SigV4 signs with the task role: no cluster secret (the worker refuses one)"
        return
    assert {"ES_API_KEY", "ES_PASSWORD"} & set(secrets)
    for name, src in secrets.items():
        assert re.match(r"(arn:aws[a-z-]*:(secretsmanager|ssm):|REF-|GETATT-)", src), (name, src)


def test_otel_sidecar(task_def):
    containers = {c["name"]: c for c in task_def["containerDefinitions"]}
    (sidecar,) = [c for c in containers.values() if "aws-otel-collector" in c["image"] or "aws-otel-collector" in c["name"]]
    assert sidecar["image"].startswith("public.ecr.aws/aws-observability/aws-otel-collector:") or "Adot" in sidecar["image"] or sidecar["image"].startswith("REF-")
    assert not sidecar["image"].endswith(":latest")
    c = worker(task_def)
    deps = {d["containerName"]: d["condition"] for d in c.get("dependsOn", [])}
    assert deps.get(sidecar["name"]) in ("START", "HEALTHY")
    if deps[sidecar["name"]] == "HEALTHY":
        assert "healthCheck" in sidecar
    # The worker exports OTLP over HTTP/protobuf (src/telemetry.rs): port 4318 on the task's localhost.
    assert re.fullmatch(r"http://(127\.0\.0\.1|localhost):4318/?", env(c)["OTEL_EXPORTER_OTLP_ENDPOINT"])


def test_json_and_template_define_the_same_worker(ecs_task, cfn_template):
    a, b = worker(ecs_task), worker(cfn_task_definition(cfn_template))
    assert set(env(a)) == set(env(b))
    assert {s["name"] for s in a["secrets"]} == {s["name"] for s in b["secrets"]}
    for key in ("healthCheck", "user", "readonlyRootFilesystem", "portMappings", "dependsOn", "cpu", "memoryReservation"):
        assert a.get(key) == b.get(key), key


# ---------------------------------------------------------------- optional parts of the template


def test_fleet_budget_variables_both_ways(cfn_template, config_table):
    """FleetDocsPerSec=0 (default): per-task rate, FLEET_* empty (= unset); set: the budget, the
    stack's table, FLEET_MAX_TASKS = MaxTasks x MaximumPercent / 100, per-task rate empty."""
    for name in ("FLEET_DOCS_PER_SEC", "FLEET_TABLE", "FLEET_MAX_TASKS"):
        assert name in config_table
    off = env(worker(cfn_task_definition(cfn_template)))
    assert off["FLEET_DOCS_PER_SEC"] == off["FLEET_TABLE"] == off["FLEET_MAX_TASKS"] == ""
    assert off["RATE_LIMIT_DOCS_PER_SEC"] == str(cfn_template["Parameters"]["RateLimitDocsPerSec"]["Default"])
    (svc,) = [r for r in cfn_template["Resources"].values() if r["Type"] == "AWS::ECS::Service"]
    max_percent = svc["Properties"]["DeploymentConfiguration"]["MaximumPercent"]
    for max_tasks in (1, 4, cfn_template["Parameters"]["MaxTasks"]["MaxValue"]):
        on = env(worker(cfn_task_definition(cfn_template, {**FLEET, "MaxTasks": str(max_tasks)})))
        assert on["FLEET_DOCS_PER_SEC"] == FLEET["FleetDocsPerSec"]
        assert on["FLEET_TABLE"] == "REF-FleetTable"
        assert int(on["FLEET_MAX_TASKS"]) == max_tasks * max_percent // 100, max_tasks
        assert on["RATE_LIMIT_DOCS_PER_SEC"] == ""


def test_every_allowed_max_tasks_has_a_fleet_max_tasks(cfn_template):
    p = cfn_template["Parameters"]["MaxTasks"]
    (svc,) = [r for r in cfn_template["Resources"].values() if r["Type"] == "AWS::ECS::Service"]
    max_percent = svc["Properties"]["DeploymentConfiguration"]["MaximumPercent"]
    table = cfn_template["Mappings"]["RunningTasksAtMost"]
    assert set(table) == {str(n) for n in range(p["MinValue"], p["MaxValue"] + 1)}
    for n, row in table.items():
        assert row["WithMaximumPercent"] == int(n) * max_percent // 100, n


def test_domain_via_task_role_both_ways(cfn_template):
    off = worker(cfn_task_definition(cfn_template))
    assert env(off)["ES_AUTH"] == env(off)["ES_AWS_SERVICE"] == ""
    assert [s["name"] for s in off["secrets"]] == ["ES_API_KEY"]
    on = worker(cfn_task_definition(cfn_template, DOMAIN))
    assert env(on)["ES_AUTH"] == "sigv4" and env(on)["ES_AWS_SERVICE"] == "es"
    assert "secrets" not in on


def test_json_environment_lists_the_fleet_and_sigv4_variables(ecs_task):
    values = env(worker(ecs_task))
    for name in ("FLEET_DOCS_PER_SEC", "FLEET_TABLE", "FLEET_MAX_TASKS", "ES_AUTH", "ES_AWS_SERVICE"):
        assert values.get(name) == "", f"{name}: listed, empty (= unset: per-task rate, API key)"


def test_cfn_to_api_evaluates_fn_if():
    """Both branches, NoValue removal, FindInMap, nested conditions."""
    t = {
        "Parameters": {"A": {"Type": "String", "Default": ""}, "N": {"Type": "Number", "Default": 2}},
        "Mappings": {"M": {"2": {"X": 4}, "3": {"X": 6}}},
        "Conditions": {"HasA": {"Fn::Not": [{"Fn::Equals": [{"Ref": "A"}, ""]}]},
                       "Both": {"Fn::And": [{"Condition": "HasA"}, {"Fn::Equals": [{"Ref": "N"}, "3"]}]}},
    }
    v = {"Env": [{"Name": "a", "Value": {"Fn::If": ["HasA", {"Ref": "A"}, "none"]}},
                 {"Fn::If": ["Both", {"Name": "b", "Value": {"Fn::FindInMap": ["M", {"Ref": "N"}, "X"]}},
                             {"Ref": "AWS::NoValue"}]}],
         "Opt": {"Fn::If": ["HasA", "yes", {"Ref": "AWS::NoValue"}]}}
    assert _cfn_to_api(v, t) == {"env": [{"name": "a", "value": "none"}]}
    assert _cfn_to_api(v, t, {"A": "x"}) == {"env": [{"name": "a", "value": "x"}], "opt": "yes"}
    assert _cfn_to_api(v, t, {"A": "x", "N": "3"})["env"][1] == {"name": "b", "value": "6"}
