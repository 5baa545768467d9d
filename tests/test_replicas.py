"""RUN_REPLICAS: which processes `make run` may start more than once, on which ports, and where
each replica is named (the edge, the services' targets, the banner, Prometheus's targets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.edge import EdgeSettings
from services.run import banner, child_env, children
from services.topology import REPLICA_PORT_STEP, file_sd, parse_replicas

TWO_AND_TWO = "jobs=2,worker=2"


def settings(**values: object) -> EdgeSettings:
    """EdgeSettings of these values and no .env file."""
    return EdgeSettings(_env_file=None, **values)  # type: ignore[arg-type]


def test_replicas_are_counted_by_process_name() -> None:
    assert parse_replicas("jobs=2, worker=3") == {"jobs": 2, "worker": 3}
    assert parse_replicas("providers=2") == {"providers": 2}
    assert parse_replicas("") == {}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("gateway=2", "gateway cannot be replicated"),
        ("envoy=2", "envoy cannot be replicated"),
        ("jobz=2", "expected NAME=COUNT"),
        ("jobs", "expected NAME=COUNT"),
        ("jobs=0", "from 1 to 9"),
        ("jobs=two", "from 1 to 9"),
        ("jobs=2,jobs=3", "from 1 to 9"),
    ],
)
def test_a_bad_replica_count_is_refused_naming_the_setting(
    text: str, says: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.core.settings import load_settings

    monkeypatch.setenv("RUN_REPLICAS", text)
    with pytest.raises(SystemExit):
        load_settings(EdgeSettings)

    error = capsys.readouterr().err
    assert "RUN_REPLICAS" in error and says in error


def test_a_replica_port_that_clashes_with_another_port_is_refused() -> None:
    with pytest.raises(ValueError, match="RUN_REPLICAS: worker and jobs-2 would both listen on port 50151"):
        settings(run_replicas="jobs=2", worker_grpc_port=50051 + REPLICA_PORT_STEP)
    with pytest.raises(ValueError, match="above 65535"):
        settings(run_replicas="jobs=2", jobs_grpc_port=65500)


def test_each_replica_gets_its_own_ports_and_the_edge_lists_every_jobs_replica(tmp_path: Path) -> None:
    configured = settings(run_replicas=TWO_AND_TWO, data_dir=tmp_path)

    started = {child.name: child for child in children(configured)}

    assert list(started) == ["jobs", "jobs-2", "providers", "worker", "worker-2", "gateway", "envoy"]
    assert started["jobs"].env == {}
    assert started["jobs-2"].env == {"JOBS_GRPC_PORT": "50151", "JOBS_METRICS_PORT": "9201"}
    assert started["jobs-2"].health_target == "127.0.0.1:50151"
    assert started["worker-2"].env["WORKER_GRPC_PORT"] == "50153"
    assert started["worker-2"].env["WORKER_NAME"] == "worker-2"
    edge = (configured.data_dir / "envoy.yaml").read_text()
    assert "port_value: 50051" in edge and "port_value: 50151" in edge


def test_the_services_reach_every_replica_through_one_target() -> None:
    env = child_env(settings(run_replicas=TWO_AND_TWO), "postgresql://db/videogen", "redis://redis/0")

    assert env["JOBS_TARGET"] == "ipv4:127.0.0.1:50051,127.0.0.1:50151"
    assert env["WORKER_TARGET"] == "ipv4:127.0.0.1:50053,127.0.0.1:50153"
    assert env["PROVIDERS_TARGET"] == "127.0.0.1:50052"


def test_the_banner_shows_every_replicas_ports() -> None:
    text = banner(settings(run_replicas=TWO_AND_TWO), "postgresql://db/videogen", "redis://redis/0")

    assert "jobs-2 (gRPC)" in text and "127.0.0.1:50151  videogen.v1.JobService" in text
    assert "http://127.0.0.1:9201/metrics" in text and "http://127.0.0.1:9203/metrics" in text


def test_prometheus_scrapes_every_replica() -> None:
    groups = {group["labels"]["job"]: group["targets"] for group in file_sd(settings(), counts={"jobs": 2})}

    assert groups["jobs"] == ["127.0.0.1:9101", "127.0.0.1:9201"]
    assert groups["worker"] == ["127.0.0.1:9103"]
