"""deploy/prometheus: the compose scrape config, the alert rules and their unit tests, for real.

promtool checks the config and the rules and runs the rules' unit tests; mutated copies show
those checks can fail. The scrape config is held to services/topology.py, every alert to its
runbook in docs/alerts.md, and a real Prometheus scrapes the processes of `make run`.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from services.core.settings import CoreSettings
from services.topology import PROCESSES, file_sd
from tests.support.local_run import local_run
from tests.support.processes import ROOT, free_port

PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "rules" / "videogen.rules.yml"
RULE_TESTS = PROMETHEUS_DIR / "tests" / "videogen.rules.test.yml"
ALERTS_DOC = ROOT / "docs" / "alerts.md"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
# The seed's five metrics (docs/contract.md, Metrics), as Prometheus stores them.
SEED_QUERIES = (
    "job_completion_rate_total",
    "job_processing_time_seconds_count",
    "job_queue_depth",
    "provider_health_status",
    "api_request_duration_seconds_count",
)
T = TypeVar("T")


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Runs promtool; its output is stdout and stderr together."""
    command = [PROMTOOL, *map(str, args)]
    return subprocess.run(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120, check=False
    )


def alert_rules(path: Path = RULES) -> list[dict[str, Any]]:
    """Every alerting rule of a rule file."""
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def rules_copy(tmp_path: Path, text: str) -> Path:
    """A rule file in tmp_path holding text."""
    copy = tmp_path / "rules" / RULES.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_text(text)
    return copy


def mutated_rules(tmp_path: Path, original: str, replacement: str) -> Path:
    """A copy of the rules in tmp_path with original (found exactly once) replaced."""
    text = RULES.read_text()
    assert text.count(original) == 1, f"the mutation's target {original!r} is not in the rules once"
    return rules_copy(tmp_path, text.replace(original, replacement))


def rule_tests_of(rules: Path, tmp_path: Path) -> Path:
    """A copy of the rules' unit tests in tmp_path that tests the rule file at rules."""
    tests = yaml.safe_load(RULE_TESTS.read_text())
    tests["rule_files"] = [str(rules)]
    copy = tmp_path / RULE_TESTS.name
    copy.write_text(yaml.safe_dump(tests, sort_keys=False))
    return copy


def test_the_compose_config_and_its_rule_files_pass_promtool_check_config() -> None:
    checked = promtool("check", "config", CONFIG)

    assert checked.returncode == 0, checked.stdout
    assert "1 rule files found" in checked.stdout and RULES.name in checked.stdout, checked.stdout


def test_the_rules_pass_promtool_check_rules() -> None:
    checked = promtool("check", "rules", RULES)

    assert checked.returncode == 0, checked.stdout


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    tested = promtool("test", "rules", RULE_TESTS)

    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_must_not() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    names = {rule["alert"] for rule in alert_rules()}
    fired: set[str] = set()
    quiet: set[str] = set()
    for group in tests:
        for case in group.get("alert_rule_test", []):
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
        for case in group.get("promql_expr_test", []):
            if "ALERTS" in case["expr"] and not case["exp_samples"]:
                exact = re.findall(r'alertname="(\w+)"', case["expr"])
                patterns = re.findall(r'alertname=~"([^"]+)"', case["expr"])
                quiet |= {name for name in names if name in exact or any(re.fullmatch(p, name) for p in patterns)}

    assert names - fired == set(), "alerts no unit test fires"
    assert names - quiet == set(), "alerts no unit test holds back"


def test_the_compose_config_scrapes_every_process_of_the_topology() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}

    assert config["rule_files"] == ["rules/*.yml"]
    assert config["global"]["scrape_interval"] == config["global"]["evaluation_interval"] == "15s"
    assert set(jobs) == {"prometheus", *(process.name for process in PROCESSES)}
    for process in PROCESSES:
        job = jobs[process.name]
        assert job.get("metrics_path", "/metrics") == process.metrics_path, process.name
        assert job["static_configs"] == [{"targets": [f"{process.name}:{process.default_metrics_port}"]}]


def test_every_alert_has_a_severity_and_a_runbook_section_in_docs() -> None:
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", ALERTS_DOC.read_text(), flags=re.MULTILINE)
    anchors = {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path == "docs/alerts.md" and anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"docs/alerts.md has no section for {rule['alert']}"


@pytest.mark.parametrize(
    ("original", "broken"),
    [
        ('up{job=~"envoy|gateway|jobs|providers|worker"} == 0', 'up{job=~"envoy|gateway|jobs|providers|worker" == 0'),
        ("for: 3m", "for: three minutes"),
    ],
    ids=["unclosed-selector", "bad-duration"],
)
def test_a_broken_rule_fails_promtool_check_rules(tmp_path: Path, original: str, broken: str) -> None:
    checked = promtool("check", "rules", mutated_rules(tmp_path, original, broken))

    assert checked.returncode != 0, checked.stdout
    assert "FAILED" in checked.stdout, checked.stdout


def test_an_unchanged_copy_of_the_rules_passes_their_unit_tests(tmp_path: Path) -> None:
    tested = promtool("test", "rules", rule_tests_of(rules_copy(tmp_path, RULES.read_text()), tmp_path))

    assert tested.returncode == 0, tested.stdout


@pytest.mark.parametrize(
    ("original", "mutant", "failing"),
    [
        ("videogen:job_failure_ratio:30m > 0.2", "videogen:job_failure_ratio:30m > 0.3", "VideoGenJobFailureRatioHigh"),
        (':job_completion_rate:increase30m{status=~"completed|failed"}) >= 20',
         ':job_completion_rate:increase30m{status=~"completed|failed"}) >= 10', "VideoGenJobFailureRatioHigh"),
        ("videogen:api_request_duration_seconds:p99_5m > 1", "videogen:api_request_duration_seconds:p99_5m > 2",
         "VideoGenApiLatencyHigh"),
        ("for: 3m", "for: 1m", "VideoGenServiceDown"),
        ("max by (queue) (job_queue_depth)", "max by (queue) (job_queue_length)", "VideoGenQueueBacklogGrowing"),
        ("increase(job_completion_rate_total[30m])", "increase(job_completion_total[30m])",
         "VideoGenJobFailureRatioHigh"),
        ("max by (provider) (provider_health_status)", "max by (instance) (provider_health_status)",
         "VideoGenProviderUnhealthy"),
        ('webhook_deliveries_total{outcome="dead"}[1h])) > 0', 'webhook_deliveries_total{outcome="dead"}[1h])) > 1',
         "VideoGenWebhookDeliveriesDead"),
    ],
    ids=["failure-ratio", "minimum-jobs", "p99", "for", "queue-metric", "completion-metric", "provider-label",
         "webhook-dead"],
)  # fmt: skip
def test_a_changed_threshold_or_metric_fails_the_unit_tests(
    tmp_path: Path, original: str, mutant: str, failing: str
) -> None:
    tested = promtool("test", "rules", rule_tests_of(mutated_rules(tmp_path, original, mutant), tmp_path))

    assert tested.returncode != 0, tested.stdout
    assert failing in tested.stdout, tested.stdout


async def until(fetch: Callable[[], Awaitable[T]], ok: Callable[[T], bool], *, what: str, timeout: float = 30) -> T:
    """Asks fetch until ok says yes; fails with the last answer at the deadline."""
    last: list[T] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                answer = await fetch()
                if ok(answer):
                    return answer
                last[:] = [answer]
                await asyncio.sleep(0.25)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {timeout}s; last answer {last!r}") from None


@asynccontextmanager
async def prometheus(workdir: Path, targets: list[dict[str, Any]]) -> AsyncIterator[httpx.AsyncClient]:
    """A real Prometheus on a free port: file-SD targets, the real rules, a scrape a second."""
    (workdir / "targets.json").write_text(json.dumps(targets))
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES.parent / "*.yml")],
        "scrape_configs": [
            {"job_name": "videogen", "file_sd_configs": [{"files": [str(workdir / "targets.json")]}]},
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (workdir / "prometheus.log").open("w") as log:
        server = subprocess.Popen(
            [PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:

            async def readiness() -> int:
                assert server.poll() is None, (workdir / "prometheus.log").read_text()
                try:
                    return (await client.get("/-/ready")).status_code
                except httpx.TransportError:
                    return 0

            await until(readiness, lambda status: status == 200, what="Prometheus ready")
            yield client
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def api(client: httpx.AsyncClient, path: str, **params: str) -> dict[str, Any]:
    """The data of a Prometheus HTTP API answer."""
    answer = (await client.get(path, params=params)).json()
    assert answer["status"] == "success", answer
    data: dict[str, Any] = answer["data"]
    return data


async def query(client: httpx.AsyncClient, expression: str) -> list[dict[str, Any]]:
    """An instant query's series."""
    result: list[dict[str, Any]] = (await api(client, "/api/v1/query", query=expression))["result"]
    return result


async def run_one_job(edge_port: int) -> None:
    """One small job through the edge, to completion, so that the job metrics exist."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{edge_port}", timeout=30) as client:
        body = {"userId": "prom-user", "prompt": "a red fox", "metadata": {"durationSeconds": 1, "width": 64,
                "height": 64, "fps": 4}}  # fmt: skip
        created = await client.post("/api/v1/jobs", json=body)
        assert created.status_code == 201, created.text

        async def status() -> str:
            return str((await client.get(f"/api/v1/jobs/{created.json()['id']}")).json()["status"])

        await until(status, lambda value: value in ("completed", "failed"), what="the job finished", timeout=60)
        assert await status() == "completed"


def series_in_rule_tests() -> dict[str, set[str]]:
    """The metric names that the unit tests feed the rules, with the label names they give each."""
    labels: dict[str, set[str]] = {}
    for group in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for series in group["input_series"]:
            name, _, rest = series["series"].partition("{")
            labels.setdefault(name, set()).update(re.findall(r"(\w+)=", rest))
    return labels


async def every_process_and_seed_metric_is_scraped(client: httpx.AsyncClient) -> None:
    """up == 1 for every process; series of the seed's metrics, and of every metric the rule
    tests feed the rules, with the labels those tests give them."""
    every_up = {process.name: "1" for process in PROCESSES}
    await until(
        lambda: query(client, "up"),
        lambda found: {s["metric"]["job"]: s["value"][1] for s in found} == every_up,
        what="up == 1 for every process",
    )
    for expression in SEED_QUERIES:
        await until(partial(query, client, expression), bool, what=f"series of {expression}")
    for name, label_names in series_in_rule_tests().items():
        found = await until(partial(query, client, name), bool, what=f"series of {name} (rule tests)")
        real = {label for series in found for label in series["metric"]}
        assert label_names <= real, f"the rule tests give {name} labels it does not have: {label_names - real}"


async def every_rule_is_loaded_and_nothing_alerts(client: httpx.AsyncClient) -> None:
    """Every group of the rule file loaded, every rule evaluated with health ok, and on a healthy
    system nothing pending or firing once every series has been scraped."""
    rules = await until(
        lambda: api(client, "/api/v1/rules"),
        lambda data: (
            bool(data["groups"]) and all(rule["health"] == "ok" for group in data["groups"] for rule in group["rules"])
        ),
        what="every rule evaluated with health ok",
    )
    expected = [group["name"] for group in yaml.safe_load(RULES.read_text())["groups"]]
    assert sorted(group["name"] for group in rules["groups"]) == sorted(expected)
    await until(lambda: api(client, "/api/v1/alerts"), lambda data: data["alerts"] == [], what="no alerts")


async def test_a_real_prometheus_scrapes_every_process_of_make_run(own_database_url: str, redis_url: str) -> None:
    with local_run(own_database_url, redis_url, name="prom") as system:
        port_settings = {key.lower(): int(value) for key, value in system.ports.items()}
        settings = CoreSettings(_env_file=None, **port_settings)  # type: ignore[arg-type]
        async with prometheus(system.workdir, file_sd(settings)) as client:
            system.process.wait_event("run.ready", timeout=120)
            await run_one_job(system.port("EDGE_PORT"))

            await every_process_and_seed_metric_is_scraped(client)
            await every_rule_is_loaded_and_nothing_alerts(client)
