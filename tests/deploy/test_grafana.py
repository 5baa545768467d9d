"""deploy/grafana: the dashboards compose provisions, each query held to what the services export.

Every panel's PromQL goes through promtool (as recording rules), and every metric it reads must be
one the services' registries export (a real Redis answers the queue-depth collector), a series
Prometheus makes itself (`up`), or a recording rule of deploy/prometheus.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from prometheus_client import REGISTRY

from services.core.settings import CoreSettings
from services.worker.stats import QueueDepthCollector
from tests.deploy.test_prometheus import RULES, promtool
from tests.support.processes import ROOT

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
# The modules that declare the services' metrics, one registry per process in production.
METRIC_MODULES = (
    "services.core.metrics",
    "services.gateway.app",
    "services.jobs.dispatch.dispatcher",
    "services.jobs.live.events",
    "services.jobs.live.watch",
    "services.jobs.quotas",
    "services.jobs.retention",
    "services.jobs.webhooks.sender",
    "services.providers.metrics",
    "services.worker.metrics",
)
# What the issue asks a dashboard of: jobs, queues, providers, webhooks, the API's RED metrics.
EXPECTED = {"api", "jobs", "providers", "queues", "webhooks"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def queries(board: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) of every target of the dashboard."""
    return [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label matchers,
    grouping clauses, ranges, numbers and function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group() in PROMQL_WORDS:
            continue
        names.add(match.group())
    return names


def exported(redis_url: str) -> set[str]:
    """Every sample name the services export, from their registries and the queue-depth collector."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    families = list(REGISTRY.collect())
    names = {sample.name for family in families for sample in family.samples}
    names |= {family.name for family in families if family.type == "gauge"}
    names |= {
        f"{family.name}{suffix}"
        for family in families
        for suffix in (("_bucket", "_count", "_sum") if family.type == "histogram" else ("_total",))
        if family.type in ("histogram", "counter")
    }
    client = redis.Redis.from_url(redis_url)
    try:
        depth = QueueDepthCollector(client, CoreSettings(_env_file=None))
        names |= {family.name for family in depth.collect()}
    finally:
        client.close()
    return names


def recorded() -> set[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"] if "record" in rule}


def test_there_is_a_dashboard_of_each_part_with_unique_ids_and_laid_out_panels() -> None:
    boards = {path.stem: load(path) for path in DASHBOARDS}

    assert set(boards) == EXPECTED
    assert len({board["uid"] for board in boards.values()}) == len(boards)
    for board in boards.values():
        assert board["title"].startswith("VideoGen / ") and board["panels"]
        assert [v["name"] for v in board["templating"]["list"]] == ["datasource"]
        ids = [panel["id"] for panel in board["panels"]]
        assert len(set(ids)) == len(ids)
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}"
            position = panel["gridPos"]
            assert position["x"] + position["w"] <= 24 and position["h"] > 0
            assert [t["refId"] for t in panel["targets"]] == [chr(ord("A") + i) for i in range(len(panel["targets"]))]


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    rules = [
        {"record": f"grafana:check_{i}", "expr": expr}
        for i, (_, expr) in enumerate(expr for path in DASHBOARDS for expr in queries(load(path)))
    ]
    path = tmp_path / "dashboards.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))

    checked = promtool("check", "rules", path)

    assert checked.returncode == 0, checked.stdout
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


def test_every_query_reads_only_metrics_the_system_exports(redis_url: str) -> None:
    known = exported(redis_url) | recorded() | {"up"}
    unknown = {
        f"{path.name}: {title}: {name}"
        for path in DASHBOARDS
        for title, expr in queries(load(path))
        for name in metric_names(expr)
        if name not in known
    }

    assert unknown == set()
    read = {name for path in DASHBOARDS for _, expr in queries(load(path)) for name in metric_names(expr)}
    # The seed's five metrics are each on a dashboard.
    assert {"job_completion_rate_total", "job_processing_time_seconds_bucket", "job_queue_depth",
            "provider_health_status", "api_request_duration_seconds_bucket"} <= read  # fmt: skip


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (le, endpoint) (rate(api_request_duration_seconds_bucket{endpoint=~"/api/.+"}[5m]))',
         {"api_request_duration_seconds_bucket"}),
        ("videogen:job_failure_ratio:30m", {"videogen:job_failure_ratio:30m"}),
        ('sum(up{job="worker"}) / count(job_watchers) > 0.5', {"up", "job_watchers"}),
    ],
)  # fmt: skip
def test_metric_names_are_read_out_of_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_a_misspelt_metric_is_caught(redis_url: str) -> None:
    assert "job_completion_rates_total" not in exported(redis_url)
    assert metric_names("sum(rate(job_completion_rates_total[5m]))") == {"job_completion_rates_total"}


def test_compose_provisions_prometheus_and_the_dashboards_read_only() -> None:
    grafana = yaml.safe_load(COMPOSE.read_text())["services"]["grafana"]
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "videogen.yaml").read_text())

    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    assert [(d["type"], d["url"], d["isDefault"]) for d in datasources["datasources"]] == [
        ("prometheus", "http://prometheus:9090", True)
    ]
    (provider,) = providers["providers"]
    assert (provider["options"]["path"], provider["allowUiUpdates"]) == ("/var/lib/grafana/dashboards", False)
    assert all(port.startswith("127.0.0.1:") for port in grafana["ports"])
