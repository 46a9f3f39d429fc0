"""Shared helpers for the deployment-file tests (run by `make test-deploy` with the stack venv)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Fargate task sizes: cpu units -> allowed memory (MiB).
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html#fargate-tasks-size
FARGATE_SIZES: dict[int, list[int]] = {
    256: [512, 1024, 2048],
    512: list(range(1024, 4096 + 1, 1024)),
    1024: list(range(2048, 8192 + 1, 1024)),
    2048: list(range(4096, 16384 + 1, 1024)),
    4096: list(range(8192, 30720 + 1, 1024)),
    8192: list(range(16384, 61440 + 1, 4096)),
    16384: list(range(32768, 122880 + 1, 8192)),
}

# Read by the OpenTelemetry SDK itself (src/telemetry.rs), not by src/config.rs.
OTEL_VARS = {
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_METRIC_EXPORT_INTERVAL",
    # Read by opentelemetry-otlp's MetricExporter builder (the worker sets no temporality in code).
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
}
# Read by the AWS SDK's credential/region chain (README: "from the AWS chain").
AWS_CHAIN_VARS = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_PROFILE"}


def readme_config() -> dict[str, str]:
    """Variable -> default cell of README's "## Configuration" table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    table: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`"):
            continue
        for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", cells[0]):
            table[name] = cells[1]
    assert "SQS_QUEUE_URL" in table, "README configuration table not found"
    return table


def literal_default(cell: str) -> str | None:
    """`1000` or `5242880` (5 MiB) -> the backticked literal; (required)/unset/prose -> None."""
    m = re.match(r"^`([^`]*)`", cell)
    return m.group(1) if m else None


def required_vars(table: dict[str, str]) -> set[str]:
    # "(required)" alone: "(required with X)" binds only when X is set.
    return {k for k, v in table.items() if v.strip().lower() == "(required)"}


def known_vars(table: dict[str, str]) -> set[str]:
    return set(table) | OTEL_VARS | AWS_CHAIN_VARS


@pytest.fixture(scope="session")
def config_table() -> dict[str, str]:
    return readme_config()


@pytest.fixture(scope="session")
def ecs_task() -> dict:
    return json.loads((ROOT / "ecs-task.json").read_text())


@pytest.fixture(scope="session")
def cfn_template() -> dict:
    from cfnlint.decode import decode

    template, matches = decode(str(ROOT / "deploy" / "cloudformation.yaml"))
    assert not matches, [str(m) for m in matches]
    return template


# ---------------------------------------------------------------- CloudFormation conditions

# Parameter values that choose each optional part of deploy/cloudformation.yaml (the defaults
# choose none): the fleet budget's table, the Amazon OpenSearch Service domain with the task role.
FLEET = {"FleetDocsPerSec": "600", "MaxTasks": "4"}
DOMAIN = {"OpenSearchDomainArn": "arn:aws:es:eu-west-1:123456789012:domain/logs", "EsApiKeySecretArn": ""}
REQUIRED = {"EsApiKeySecretArn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:es-key"}


def parameter_values(template: dict, given: dict[str, str] | None = None) -> dict[str, str]:
    """Parameter -> value as CloudFormation passes it to Ref (always a string): the default,
    unless given (REQUIRED fills the ones without a default that the conditions read)."""
    values = {k: str(v["Default"]) for k, v in template.get("Parameters", {}).items() if "Default" in v}
    values.update(REQUIRED)
    values.update(given or {})
    return values


def evaluate_condition(template: dict, expr, values: dict[str, str]) -> bool:
    """Fn::Equals / Not / And / Or / Condition over parameter Refs, as CloudFormation does."""
    if isinstance(expr, bool):
        return expr
    if isinstance(expr, str):
        return expr.lower() == "true"
    ((fn, arg),) = expr.items()
    if fn == "Condition":
        return evaluate_condition(template, template["Conditions"][arg], values)
    if fn == "Fn::Not":
        return not evaluate_condition(template, arg[0], values)
    if fn == "Fn::And":
        return all(evaluate_condition(template, a, values) for a in arg)
    if fn == "Fn::Or":
        return any(evaluate_condition(template, a, values) for a in arg)
    if fn == "Fn::Equals":
        a, b = (values[x["Ref"]] if isinstance(x, dict) else str(x) for x in arg)
        return a == b
    raise AssertionError(f"unsupported condition function {fn}")


def conditions(template: dict, values: dict[str, str]) -> dict[str, bool]:
    return {k: evaluate_condition(template, v, values) for k, v in template.get("Conditions", {}).items()}


NO_VALUE = object()


def resolve_ifs(value, conds: dict[str, bool]):
    """Fn::If -> the chosen branch, Ref AWS::NoValue -> removed (other intrinsics kept)."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((k, v),) = value.items()
            if k == "Fn::If":
                name, yes, no = v
                return resolve_ifs(yes if conds[name] else no, conds)
            if k == "Ref" and v == "AWS::NoValue":
                return NO_VALUE
        out = {k: resolve_ifs(v, conds) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}
    if isinstance(value, list):
        return [x for x in (resolve_ifs(v, conds) for v in value) if x is not NO_VALUE]
    return value


def resolve_template(template: dict, given: dict[str, str] | None = None) -> dict:
    """The template as CloudFormation would deploy it with these parameters: resources whose
    condition is false are gone, every Fn::If is its chosen branch."""
    conds = conditions(template, parameter_values(template, given))
    out = dict(template)
    out["Resources"] = {
        k: resolve_ifs(r, conds) for k, r in template["Resources"].items() if conds.get(r.get("Condition", ""), True)
    }
    out["Outputs"] = {
        k: resolve_ifs(o, conds) for k, o in template.get("Outputs", {}).items() if conds.get(o.get("Condition", ""), True)
    }
    return out
