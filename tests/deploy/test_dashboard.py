"""The CloudWatch dashboard, the alarms and the ADOT collector configuration that feeds them.

The worker's metric list has one source: the instruments `src/metrics.rs` builds (name, kind,
unit) and the attributes the code under `src/` records with them. Every worker metric a widget or
an alarm names must be one of them, in the namespace and with the dimensions the collector's
awsemf exporter gives it (its rules: README "Dashboard and alarms"). AWS's own metrics must be
ones AWS publishes, on this stack's resources.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest
import yaml

from conftest import ROOT

NAMESPACE = "f4a-indexer"
SERVICE_DIM = "service.name"
REGION = "eu-west-1"

# AWS metrics the dashboard and alarms may use: (namespace, name) -> dimension names.
AWS_METRICS = {
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): {"QueueName"},
    ("AWS/SQS", "ApproximateNumberOfMessagesNotVisible"): {"QueueName"},
    ("AWS/SQS", "ApproximateAgeOfOldestMessage"): {"QueueName"},
    ("ECS/ContainerInsights", "RunningTaskCount"): {"ClusterName", "ServiceName"},
    ("ECS/ContainerInsights", "DesiredTaskCount"): {"ClusterName", "ServiceName"},
    ("AWS/Firehose", "IncomingRecords"): {"DeliveryStreamName"},
    ("AWS/Firehose", "DeliveryToS3.Records"): {"DeliveryStreamName"},
    ("AWS/Firehose", "DeliveryToS3.DataFreshness"): {"DeliveryStreamName"},
    ("AWS/Firehose", "DeliveryToS3.Success"): {"DeliveryStreamName"},
}
# Which resource a dimension value must point at (after resolve()).
DIM_VALUES = {
    "QueueName": {"GETATT-Queue.QueueName", "GETATT-DeadLetterQueue.QueueName"},
    "ClusterName": {"REF-Cluster"},
    "ServiceName": {"GETATT-Service.Name"},
    "DeliveryStreamName": {"REF-DeliveryStream"},
    SERVICE_DIM: {"f4a-indexer"},  # NamePrefix's default = the worker's OTEL_SERVICE_NAME
}
# MetricDatum units (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_MetricDatum.html).
CLOUDWATCH_UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
    "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
    "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second",
    "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second",
    "Terabits/Second", "Count/Second", "None",
}
# awsemf's own unit translation (exporter/awsemfexporter/grouped_metric.go, translateUnit).
AWSEMF_UNITS = {"ms": "Milliseconds", "s": "Seconds", "us": "Microseconds", "By": "Bytes", "Bi": "Bits"}
# Statistics that mean something per kind. The worker exports its histograms as base-2
# exponential histograms (src/telemetry.rs), which awsemf publishes as Values/Counts: CloudWatch
# computes percentiles from those (an explicit-bucket histogram would arrive as a statistic set,
# Count/Sum/Min/Max, with no percentile).
PERCENTILE = re.compile(r"^p(50|90|95|99|99\.9)$")
STATS = {
    "counter": {"Sum"},
    "histogram": {"Average", "Maximum", "Minimum", "SampleCount", "Sum", "p50", "p90", "p95", "p99", "p99.9"},
    "gauge": {"Average", "Maximum", "Minimum"},
}


# ---------------------------------------------------------------- the worker's metric list


@dataclass
class Instrument:
    name: str
    kind: str  # counter | histogram | updown | gauge
    unit: str
    attributes: set[str] = field(default_factory=set)


def _call_args(text: str, start: int) -> str:
    """The text of the balanced (...) that opens at text[start]."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    raise AssertionError("unbalanced call in src")


def worker_metrics() -> dict[str, Instrument]:
    """Instruments built in src/metrics.rs, with the attribute keys src/ records on them."""
    src = (ROOT / "src" / "metrics.rs").read_text()
    out: dict[str, Instrument] = {}
    fields: dict[str, str] = {}
    for m in re.finditer(r'(\w+):\s*counter\(\s*"([^"]+)",\s*"([^"]*)"', src):
        fields[m.group(1)] = m.group(2)
        out[m.group(2)] = Instrument(m.group(2), "counter", m.group(3))
    for m in re.finditer(r'(\w+):\s*seconds\(\s*"([^"]+)"', src):
        fields[m.group(1)] = m.group(2)
        out[m.group(2)] = Instrument(m.group(2), "histogram", "s")
    for m in re.finditer(r'(\w+):\s*m\s*\.i64_up_down_counter\("([^"]+)"\)\s*\.with_unit\("([^"]*)"\)', src):
        fields[m.group(1)] = m.group(2)
        out[m.group(2)] = Instrument(m.group(2), "updown", m.group(3))
    for m in re.finditer(r'observable_gauge\("([^"]+)"\)\s*\.with_unit\("([^"]*)"\)(.*?)\.build\(\)', src, re.S):
        attrs = set(re.findall(r'KeyValue::new\("([^"]+)"', m.group(3)))
        out[m.group(1)] = Instrument(m.group(1), "gauge", m.group(2), attrs)
    # Attributes: every .add(...)/.record(...) on an instrument field, anywhere under src/.
    for path in (ROOT / "src").rglob("*.rs"):
        text = path.read_text()
        for fname, metric in fields.items():
            for m in re.finditer(rf"\.{fname}\s*\.(?:add|record)\(", text):
                args = _call_args(text, m.end() - 1)
                out[metric].attributes |= set(re.findall(r'KeyValue::new\("([^"]+)"', args))
    return out


def test_metric_list_parsed_from_src():
    """The parser sees what src/metrics.rs builds (or every check below would be vacuous)."""
    metrics = worker_metrics()
    assert len(metrics) >= 12, sorted(metrics)
    assert metrics["f4a.documents.indexed"].kind == "counter"
    assert metrics["f4a.bulk.duration"].kind == "histogram" and metrics["f4a.bulk.duration"].unit == "s"
    assert metrics["f4a.rate.configured"].kind == "gauge"
    assert metrics["f4a.messages.in_flight"].kind == "updown"
    assert metrics["f4a.bulk.requests"].attributes == {"outcome"}
    assert metrics["f4a.documents.indexed"].attributes == set()


def test_readme_metric_table_matches_src():
    text = (ROOT / "README.md").read_text()
    table = text.split("**Metrics**", 1)[1].split("\n\n", 2)[1]
    names = set()
    for line in table.splitlines():
        first = line.strip().strip("|").split("|")[0]
        names |= set(re.findall(r"`(f4a\.[a-z_.]+)`", first))
    assert names == set(worker_metrics()), names ^ set(worker_metrics())


# ---------------------------------------------------------------- template helpers


def resolve(value, template: dict, params: dict[str, str] | None = None):
    """Fn::Sub strings and Refs -> text: parameters take `params` or their defaults, resources
    become REF-<name> / GETATT-<name>.<attr>. Unknown names fail."""
    params = params or {}
    p, r = template["Parameters"], template["Resources"]

    def one(name: str) -> str:
        if name == "AWS::Region":
            return REGION
        if name in ("AWS::AccountId", "AWS::Partition", "AWS::StackName"):
            return {"AWS::AccountId": "123456789012", "AWS::Partition": "aws", "AWS::StackName": "stack"}[name]
        if name in p:
            return str(params.get(name, p[name].get("Default", f"PARAM-{name}")))
        base, _, attr = name.partition(".")
        assert base in r, f"${{{name}}} names nothing in the template"
        return f"GETATT-{name}" if attr else f"REF-{name}"

    if isinstance(value, dict) and "Fn::Sub" in value:
        text = value["Fn::Sub"]
        assert isinstance(text, str)
        return re.sub(r"\$\{([^}]+)\}", lambda m: one(m.group(1)), text)
    if isinstance(value, dict) and "Ref" in value:
        return one(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return one(".".join(value["Fn::GetAtt"]))
    return value


def evaluate(value, template: dict, params: dict[str, str]):
    """Conditions, Fn::If and AWS::NoValue, as CloudFormation evaluates them for `params`."""

    def cond(c) -> bool:
        if isinstance(c, str):
            return cond(template["Conditions"][c])
        (k, v), = c.items()
        if k == "Fn::Not":
            return not cond(v[0])
        if k == "Fn::Equals":
            a, b = (evaluate(x, template, params) for x in v)
            return a == b
        if k == "Fn::Or":
            return any(cond(x) for x in v)
        if k == "Fn::And":
            return all(cond(x) for x in v)
        if k == "Condition":
            return cond(v)
        raise AssertionError(k)

    if isinstance(value, dict) and "Fn::If" in value:
        name, yes, no = value["Fn::If"]
        return evaluate(yes if cond(name) else no, template, params)
    if isinstance(value, dict) and value.get("Ref") == "AWS::NoValue":
        return None
    if isinstance(value, dict) and "Ref" in value and value["Ref"] in template["Parameters"]:
        return params.get(value["Ref"], template["Parameters"][value["Ref"]].get("Default"))
    if isinstance(value, list):
        return [x for x in (evaluate(v, template, params) for v in value) if x is not None]
    return value


def resources(t: dict, typ: str) -> dict[str, dict]:
    return {k: v for k, v in t["Resources"].items() if v["Type"] == typ}


def collector(t: dict) -> dict:
    (td,) = resources(t, "AWS::ECS::TaskDefinition").values()
    (c,) = [c for c in td["Properties"]["ContainerDefinitions"] if c["Name"] == "aws-otel-collector"]
    return c


def worker_env(t: dict) -> dict:
    (td,) = resources(t, "AWS::ECS::TaskDefinition").values()
    (c,) = [c for c in td["Properties"]["ContainerDefinitions"] if c["Name"] == "f4a-indexer"]
    return {e["Name"]: e["Value"] for e in c["Environment"]}


def template_collector_config(t: dict) -> dict:
    env = {e["Name"]: e["Value"] for e in collector(t).get("Environment", [])}
    assert "AOT_CONFIG_CONTENT" in env, "the collector runs the stack's own configuration"
    return yaml.safe_load(resolve(env["AOT_CONFIG_CONTENT"], t))


def json_collector_config(ecs_task: dict) -> dict:
    (c,) = [c for c in ecs_task["containerDefinitions"] if c["name"] == "aws-otel-collector"]
    env = {e["name"]: e["value"] for e in c.get("environment", [])}
    return yaml.safe_load(env["AOT_CONFIG_CONTENT"])


def emf(config: dict) -> dict:
    exporters = config["service"]["pipelines"]["metrics"]["exporters"]
    (name,) = [e for e in exporters if e.split("/")[0] == "awsemf"]
    return config["exporters"][name]


def declared_dimensions(config: dict, metric: str) -> list[list[str]]:
    """The dimension sets awsemf gives `metric` (metric_declarations, no rollup)."""
    dims = []
    for decl in emf(config)["metric_declarations"]:
        if any(re.search(sel, metric) for sel in decl["metric_name_selectors"]):
            dims += [sorted(d) for d in decl["dimensions"]]
    return dims


# ---------------------------------------------------------------- the collector configuration


def test_collector_config_is_the_same_in_both_files(cfn_template, ecs_task):
    assert template_collector_config(cfn_template) == json_collector_config(ecs_task)
    # AOT_CONFIG_CONTENT wins over --config: a --config flag beside it would mislead.
    assert "Command" not in collector(cfn_template)
    assert not [c for c in ecs_task["containerDefinitions"] if c["name"] == "aws-otel-collector" and "command" in c]


def test_collector_receives_what_the_worker_sends_and_writes_where_it_may(cfn_template):
    config = template_collector_config(cfn_template)
    env = worker_env(cfn_template)
    port = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rsplit(":", 1)[1].strip("/")
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"] == f"127.0.0.1:{port}"
    pipelines = config["service"]["pipelines"]
    assert pipelines["traces"]["receivers"] == ["otlp"] and pipelines["traces"]["exporters"] == ["awsxray"]
    assert pipelines["metrics"]["receivers"] == ["otlp"]
    assert "health_check" in config["service"]["extensions"], "the sidecar's /healthcheck asks it"
    # The EMF log group is the stack's (retention set), and the task role may write only there.
    group = cfn_template["Resources"]["MetricsLogGroup"]
    assert emf(config)["log_group_name"] == resolve(group["Properties"]["LogGroupName"], cfn_template)
    assert "RetentionInDays" in group["Properties"]


def test_emf_namespace_dimensions_and_units(cfn_template):
    config = template_collector_config(cfn_template)
    e = emf(config)
    metrics = worker_metrics()
    assert e["namespace"] == NAMESPACE
    assert e["dimension_rollup_option"] == "NoDimensionRollup", "no extra metrics to pay for"
    # service.name is a resource attribute: it is a label only with this conversion on.
    assert e["resource_to_telemetry_conversion"] == {"enabled": True}
    declared = {m for m in metrics if declared_dimensions(config, m)}
    assert declared, "nothing declared"
    descriptors = {d["metric_name"]: d for d in e.get("metric_descriptors", [])}
    assert set(descriptors) <= set(metrics), set(descriptors) - set(metrics)
    for name in declared:
        inst = metrics[name]
        # awsemf turns every cumulative sum into deltas: an up-down counter's level is lost.
        assert inst.kind != "updown", f"{name}: awsemf would publish its changes, not its level"
        for dims in declared_dimensions(config, name):
            assert SERVICE_DIM in dims and set(dims) - {SERVICE_DIM} <= inst.attributes, (name, dims)
        unit = descriptors[name]["unit"] if name in descriptors and descriptors[name].get("overwrite") else AWSEMF_UNITS.get(inst.unit, inst.unit)
        assert unit in CLOUDWATCH_UNITS, f"{name}: unit {unit!r} is not a CloudWatch unit"
    for sel in (s for d in e["metric_declarations"] for s in d["metric_name_selectors"]):
        assert sel.startswith("^") and sel.endswith("$"), f"{sel}: anchor the selector"


def test_worker_exports_delta_temporality(cfn_template, ecs_task):
    assert worker_env(cfn_template)["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"] == "delta"
    (w,) = [c for c in ecs_task["containerDefinitions"] if c["name"] == "f4a-indexer"]
    assert {e["name"]: e["value"] for e in w["environment"]}["OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"] == "delta"
    # A temporality set in code would override the variable (opentelemetry-otlp resolve_temporality).
    offenders = [p.name for p in (ROOT / "src").rglob("*.rs") if "with_temporality" in p.read_text()]
    assert not offenders, offenders
    # The SDK service name is the dimension the dashboard and alarms select.
    assert worker_env(cfn_template)["OTEL_SERVICE_NAME"] == {"Ref": "NamePrefix"}


# ---------------------------------------------------------------- dashboard


@dataclass
class MetricRef:
    where: str
    namespace: str
    name: str
    dims: dict[str, str]
    stat: str


def dashboard(t: dict, params: dict[str, str] | None = None) -> dict:
    (d,) = resources(t, "AWS::CloudWatch::Dashboard").values()
    return json.loads(resolve(d["Properties"]["DashboardBody"], t, params))


def metric_widgets(body: dict) -> list[dict]:
    return [w for w in body["widgets"] if w["type"] == "metric"]


def widget_metrics(w: dict) -> tuple[list[MetricRef], list[dict]]:
    refs, expressions = [], []
    props = w["properties"]
    for row in props["metrics"]:
        opts = row[-1] if isinstance(row[-1], dict) else {}
        if "expression" in opts and len(row) == 1:
            expressions.append(opts)
            continue
        plain = [x for x in row if not isinstance(x, dict)]
        assert "." not in plain and "..." not in plain, f"{props['title']}: spell metrics out"
        ns, name, *kv = plain
        assert len(kv) % 2 == 0, row
        refs.append(MetricRef(props["title"], ns, name, dict(zip(kv[::2], kv[1::2])), opts.get("stat", props.get("stat", "Average"))))
        if "id" in opts:
            expressions.append({"id": opts["id"], "_metric": True})
    return refs, expressions


def dashboard_metrics(t: dict) -> list[MetricRef]:
    return [r for w in metric_widgets(dashboard(t)) for r in widget_metrics(w)[0]]


def check_metric(ref: MetricRef, config: dict) -> None:
    if ref.namespace == NAMESPACE:
        metrics = worker_metrics()
        assert ref.name in metrics, f"{ref.where}: {ref.name} is not a metric of src/metrics.rs"
        inst = metrics[ref.name]
        assert sorted(ref.dims) in declared_dimensions(config, ref.name), (
            f"{ref.where}: {ref.name} with {sorted(ref.dims)} is not published (metric_declarations)")
        assert ref.stat in STATS[inst.kind], f"{ref.where}: {ref.stat} of a {inst.kind} ({ref.name})"
    else:
        key = (ref.namespace, ref.name)
        assert key in AWS_METRICS, f"{ref.where}: {key} is not a known AWS metric"
        assert set(ref.dims) == AWS_METRICS[key], (ref.where, key, ref.dims)
    for k, v in ref.dims.items():
        assert v in DIM_VALUES[k], f"{ref.where}: {k}={v}"


def test_dashboard_body_is_valid_json_with_a_sane_layout(cfn_template):
    body = dashboard(cfn_template)
    assert body["widgets"]
    cells = set()
    for w in body["widgets"]:
        assert w["type"] in ("metric", "alarm", "text", "log")
        assert 0 <= w["x"] and w["x"] + w["width"] <= 24, w["properties"].get("title")
        mine = {(x, y) for x in range(w["x"], w["x"] + w["width"]) for y in range(w["y"], w["y"] + w["height"])}
        assert not cells & mine, f"{w['properties'].get('title')} overlaps another widget"
        cells |= mine
        if w["type"] == "metric":
            assert w["properties"]["region"] == REGION and w["properties"]["title"]
    # Numbers substituted from parameters stay numbers.
    body = dashboard(cfn_template, {"MaxTasks": "7", "OldestMessageAlarmSeconds": "900"})
    values = {a["label"]: a["value"] for w in metric_widgets(body) for a in w["properties"].get("annotations", {}).get("horizontal", [])}
    assert values["MaxTasks"] == 7 and values["alarm (OldestMessageAlarmSeconds)"] == 900


def test_every_dashboard_metric_exists_with_its_namespace_and_dimensions(cfn_template):
    config = template_collector_config(cfn_template)
    refs = dashboard_metrics(cfn_template)
    assert len(refs) >= 15
    for ref in refs:
        check_metric(ref, config)


def test_dashboard_expressions_reference_defined_ids(cfn_template):
    checked = 0
    for w in metric_widgets(dashboard(cfn_template)):
        _, exprs = widget_metrics(w)
        ids = [e["id"] for e in exprs]
        assert len(ids) == len(set(ids)), f"{w['properties']['title']}: duplicate id"
        for e in exprs:
            assert re.fullmatch(r"[a-z][a-zA-Z0-9_]*", e["id"]), e["id"]
            if "expression" in e:
                names = set(re.findall(r"\b([a-z][a-zA-Z0-9_]*)\b", e["expression"]))
                assert names and names <= set(ids) - {e["id"]}, (w["properties"]["title"], e["expression"])
                checked += 1
    assert checked >= 4


def test_dashboard_shows_what_issue_20_asks_for(cfn_template):
    shown = {(r.namespace, r.name) for r in dashboard_metrics(cfn_template)}
    by_queue = {(r.name, r.dims.get("QueueName")) for r in dashboard_metrics(cfn_template) if r.namespace == "AWS/SQS"}
    assert ("ApproximateNumberOfMessagesVisible", "GETATT-Queue.QueueName") in by_queue  # backlog
    assert ("ApproximateAgeOfOldestMessage", "GETATT-Queue.QueueName") in by_queue
    assert ("ApproximateNumberOfMessagesVisible", "GETATT-DeadLetterQueue.QueueName") in by_queue  # DLQ depth
    assert ("ECS/ContainerInsights", "RunningTaskCount") in shown
    for name in ("f4a.documents.indexed", "f4a.documents.dead_lettered", "f4a.rate.configured",
                 "f4a.rate.effective", "f4a.bulk.duration", "f4a.lag"):
        assert (NAMESPACE, name) in shown, name
    assert any(ns == "AWS/Firehose" and n.startswith("DeliveryToS3.") for ns, n in shown)
    # Per minute: counters summed over 60 s.
    for w in metric_widgets(dashboard(cfn_template)):
        refs, _ = widget_metrics(w)
        for r in refs:
            if r.name == "f4a.documents.indexed" and "per minute" in w["properties"]["title"]:
                assert w["properties"]["period"] == 60 and r.stat == "Sum"


def test_histograms_are_exponential_so_percentiles_exist(cfn_template):
    """p50/p99 widgets are filled only if the worker exports exponential histograms: every
    histogram goes through the SDK view with Base2ExponentialHistogram, at most 100 buckets (an
    EMF metric takes at most 100 values), and the latency widgets ask for p50 and p99."""
    telemetry = (ROOT / "src" / "telemetry.rs").read_text()
    view = telemetry[telemetry.index("fn exponential_histograms") :]
    view = view[: view.index("\n}\n")]
    assert "InstrumentKind::Histogram" in view and "Base2ExponentialHistogram" in view
    size = int(re.search(r"max_size:\s*(\d+)", view).group(1))
    assert 0 < size <= 100, size
    assert ".with_view(exponential_histograms)" in telemetry
    metrics = worker_metrics()
    hist = [r for r in dashboard_metrics(cfn_template) if r.namespace == NAMESPACE and metrics[r.name].kind == "histogram"]
    assert {r.name for r in hist} == {"f4a.bulk.duration", "f4a.lag"}
    for name in ("f4a.bulk.duration", "f4a.lag"):
        stats = {r.stat for r in hist if r.name == name}
        assert {"p50", "p99", "Maximum"} <= stats, (name, stats)


def test_dashboard_shows_the_fleet_budget_and_shares(cfn_template):
    """FLEET_DOCS_PER_SEC's gauges (every `f4a.fleet.*` of src/metrics.rs) are published and on
    the dashboard, with the budget (the FleetDocsPerSec parameter) as a line."""
    config = template_collector_config(cfn_template)
    fleet = {n for n in worker_metrics() if n.startswith("f4a.fleet.")}
    assert fleet == {"f4a.fleet.live_tasks", "f4a.fleet.share", "f4a.fleet.fallback"}, fleet
    for name in fleet:
        assert declared_dimensions(config, name) == [[SERVICE_DIM]], name
    shown = {r.name for r in dashboard_metrics(cfn_template) if r.namespace == NAMESPACE}
    assert fleet <= shown, fleet - shown
    body = dashboard(cfn_template, {"FleetDocsPerSec": "600"})
    values = {a["label"]: a["value"] for w in metric_widgets(body) for a in w["properties"].get("annotations", {}).get("horizontal", [])}
    assert values["FleetDocsPerSec (budget)"] == 600


def test_every_published_worker_metric_is_on_the_dashboard_or_an_alarm(cfn_template):
    """A selector that publishes a metric nobody looks at costs a paid metric for nothing."""
    config = template_collector_config(cfn_template)
    published = {m for m in worker_metrics() if declared_dimensions(config, m)}
    used = {r.name for r in dashboard_metrics(cfn_template) if r.namespace == NAMESPACE}
    for name, alarm in resources(cfn_template, "AWS::CloudWatch::Alarm").items():
        used |= {r.name for r in alarm_metrics(name, alarm) if r.namespace == NAMESPACE}
    assert published == used, published ^ used


def test_documents_widget_shows_dropped_documents(cfn_template):
    names = {r.name for r in dashboard_metrics(cfn_template) if r.namespace == NAMESPACE}
    assert "f4a.documents.dropped" in names


def test_alarm_widget_lists_every_alarm(cfn_template):
    (w,) = [w for w in dashboard(cfn_template)["widgets"] if w["type"] == "alarm"]
    alarms = resources(cfn_template, "AWS::CloudWatch::Alarm")
    assert sorted(w["properties"]["alarms"]) == sorted(f"GETATT-{a}.Arn" for a in alarms)


# ---------------------------------------------------------------- alarms


def alarm_metrics(name: str, alarm: dict) -> list[MetricRef]:
    p = alarm["Properties"]
    if "MetricName" in p:
        dims = {d["Name"]: d["Value"] for d in p.get("Dimensions", [])}
        return [MetricRef(name, p["Namespace"], p["MetricName"], dims, p.get("Statistic") or p.get("ExtendedStatistic"))]
    out = []
    for m in p["Metrics"]:
        if "MetricStat" in m:
            ms = m["MetricStat"]
            dims = {d["Name"]: d["Value"] for d in ms["Metric"].get("Dimensions", [])}
            out.append(MetricRef(name, ms["Metric"]["Namespace"], ms["Metric"]["MetricName"], dims, ms["Stat"]))
    return out


def test_alarms_reference_existing_metrics(cfn_template):
    config = template_collector_config(cfn_template)
    alarms = resources(cfn_template, "AWS::CloudWatch::Alarm")
    assert len(alarms) == 5
    for name, alarm in alarms.items():
        refs = alarm_metrics(name, alarm)
        assert refs, name
        for ref in refs:
            ref.dims = {k: resolve(v, cfn_template) for k, v in ref.dims.items()}
            check_metric(ref, config)
        p = alarm["Properties"]
        if any(r.namespace == NAMESPACE for r in refs):
            # Delta exports send no point for an idle minute: missing is "nothing happened".
            assert p["TreatMissingData"] == "notBreaching", name
        for m in p.get("Metrics", []):
            if "Expression" in m:
                for ref_id in re.findall(r"\b([a-z][a-zA-Z0-9_]*)\b", m["Expression"]):
                    assert ref_id in {x["Id"] for x in p["Metrics"]}, (name, ref_id)


def _alarm(t: dict, metric: str, queue: str | None = None) -> dict:
    found = [a["Properties"] for n, a in resources(t, "AWS::CloudWatch::Alarm").items()
             if any(r.name == metric and (queue is None or r.dims.get("QueueName") == {"Fn::GetAtt": [queue, "QueueName"]})
                    for r in alarm_metrics(n, a))]
    assert len(found) == 1, (metric, queue, len(found))
    return found[0]


def test_the_five_alarms(cfn_template):
    params = cfn_template["Parameters"]
    dlq = _alarm(cfn_template, "ApproximateNumberOfMessagesVisible", "DeadLetterQueue")
    assert dlq["Threshold"] == 0 and dlq["ComparisonOperator"] == "GreaterThanThreshold"

    old = _alarm(cfn_template, "ApproximateAgeOfOldestMessage")
    assert old["Threshold"] == {"Ref": "OldestMessageAlarmSeconds"} and params["OldestMessageAlarmSeconds"]["Default"] == 3600
    assert old["ComparisonOperator"] == "GreaterThanThreshold" and old["Statistic"] == "Maximum"

    stalled = _alarm(cfn_template, "f4a.documents.indexed")
    (expr,) = [m for m in stalled["Metrics"] if m.get("ReturnData")]
    by_name = {m["MetricStat"]["Metric"]["MetricName"]: m["Id"] for m in stalled["Metrics"] if "MetricStat" in m}
    assert {"ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible", "f4a.documents.indexed"} <= set(by_name)
    assert f"FILL({by_name['f4a.documents.indexed']}, 0) == 0" in expr["Expression"]
    # Backlog = waiting + in flight: a stuck worker holding every message leaves none visible.
    assert {by_name["ApproximateNumberOfMessagesVisible"], by_name["ApproximateNumberOfMessagesNotVisible"]} <= set(
        re.findall(r"\b[a-z]\w*\b", expr["Expression"]))
    periods = {m["MetricStat"]["Period"] for m in stalled["Metrics"] if "MetricStat" in m}
    assert periods == {60} and stalled["EvaluationPeriods"] == stalled["DatapointsToAlarm"] == 15  # 15 min

    dead = _alarm(cfn_template, "f4a.documents.dead_lettered")
    assert dead["Period"] == 3600 and dead["Statistic"] == "Sum"
    assert dead["Threshold"] == {"Ref": "DeadLetterDocsPerHourAlarm"} and dead["ComparisonOperator"] == "GreaterThanThreshold"

    at_max = _alarm(cfn_template, "RunningTaskCount")
    assert at_max["Threshold"] == {"Ref": "MaxTasks"} and at_max["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert at_max["Statistic"] == "Minimum" and at_max["Period"] * at_max["EvaluationPeriods"] == 1800


@pytest.mark.parametrize("given, expected", [
    ({}, []),
    ({"AlarmEmail": "ops@example.com"}, ["REF-AlarmTopic"]),
    ({"AlarmTopicArn": "arn:aws:sns:eu-west-1:123456789012:pager"}, ["arn:aws:sns:eu-west-1:123456789012:pager"]),
    ({"AlarmEmail": "ops@example.com", "AlarmTopicArn": "arn:aws:sns:eu-west-1:123456789012:pager"},
     ["REF-AlarmTopic", "arn:aws:sns:eu-west-1:123456789012:pager"]),
])
def test_alarm_actions_follow_the_optional_topic_parameters(cfn_template, given, expected):
    params = cfn_template["Parameters"]
    assert params["AlarmEmail"]["Default"] == "" and params["AlarmTopicArn"]["Default"] == ""
    for name in ("AlarmEmail", "AlarmTopicArn"):
        assert re.fullmatch(params[name]["AllowedPattern"], ""), f"{name} may stay empty"
        if name in given:
            assert re.fullmatch(params[name]["AllowedPattern"], given[name])
    for name, alarm in resources(cfn_template, "AWS::CloudWatch::Alarm").items():
        for key in ("AlarmActions", "OKActions"):
            actions = [a if isinstance(a, str) else resolve(a, cfn_template) for a in evaluate(alarm["Properties"][key], cfn_template, given)]
            assert actions == expected, (name, key)
    # The topic and its e-mail subscription exist only with AlarmEmail.
    for typ in ("AWS::SNS::Topic", "AWS::SNS::Subscription"):
        (res,) = resources(cfn_template, typ).values()
        created = evaluate({"Fn::If": [res["Condition"], True, False]}, cfn_template, given)
        assert created == ("AlarmEmail" in given), typ


# ---------------------------------------------------------------- README


def test_readme_describes_the_dashboard_and_the_alarms(cfn_template):
    text = (ROOT / "README.md").read_text()
    section = text.split("\n### Dashboard and alarms", 1)[1].split("\n## ", 1)[0]
    for w in metric_widgets(dashboard(cfn_template)):
        assert w["properties"]["title"] in section, w["properties"]["title"]
    for name, alarm in resources(cfn_template, "AWS::CloudWatch::Alarm").items():
        suffix = alarm["Properties"]["AlarmName"]["Fn::Sub"].replace("${NamePrefix}", "")
        assert suffix in section, suffix
    for param in ("AlarmEmail", "AlarmTopicArn", "OldestMessageAlarmSeconds", "DeadLetterDocsPerHourAlarm", "MaxTasks"):
        assert f"`{param}`" in section, param
    assert "AOT_CONFIG_CONTENT" in section and "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE" in section
