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
