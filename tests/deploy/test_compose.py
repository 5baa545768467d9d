"""deploy/docker-compose.yml, checked without a Docker engine.

The file is interpolated from .env.example the way Compose does it, then parsed by a strict
Compose-spec parser (compose-spec), then held to services/topology.py and to what the code
reads. The healthcheck commands are run for real against the processes of `make run`. The
project compose.yaml makes (its includes resolved) names only images of deploy/images.txt, and
with no profile active starts nothing of a profile (the s3 store) nor anything that needs one.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_spec import PyCompose

from services.core.settings import CoreSettings
from services.topology import BY_NAME, ENVOY, PROCESSES, Process
from tests.support import databases
from tests.support.deployment import (
    OTHER_KNOWN,
    SETTINGS,
    command_module,
    listen_everywhere,
    variables_known,
    variables_needed,
)
from tests.support.local_run import local_run
from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "docker-compose.yml"
ROOT_COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
IMAGES = ROOT / "deploy" / "images.txt"
# MinIO's community images on Docker Hub, deleted on 2026-09-12: a pull fails.
GONE_IMAGES = {"minio/minio", "minio/mc"}
EXPECTED_SERVICES = {
    "postgres",
    "redis",
    "minio",
    "minio-init",
    "migrate",
    "prometheus",
    "grafana",
    *(process.name for process in PROCESSES),
}
MEDIA = "/var/lib/videogen/media"
# The commands that listen (the migration only runs and exits).
SERVING = {process.module for process in PROCESSES}

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


def env_example() -> dict[str, str]:
    """The variables .env.example sets."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(text: str, env: dict[str, str], used: set[str] | None = None) -> str:
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        expression = match.group("braced") or match.group("plain")
        name, operator, default = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(:?[-?]?)(.*)", expression).groups()  # type: ignore[union-attr]
        if used is not None:
            used.add(name)
        value = env.get(name)
        if (operator in (":-", ":?") and not value) or (operator in ("-", "?") and value is None):
            if operator.endswith("?"):
                raise ValueError(f"{name}: {default}")
            return default
        return value or ""

    return _VARIABLE.sub(replace, text)


def load(text: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file as Compose sees it: interpolated, YAML merge keys resolved, validated."""
    resolved = yaml.safe_load(interpolate(text, env if env is not None else env_example()))
    return PyCompose.from_json(json.dumps(resolved)).to_dict()


def project(root: Path = ROOT_COMPOSE) -> dict[str, Any]:
    """The services Compose makes of compose.yaml: each included file loaded as it is, relative to
    the file that includes it (an included service may not be redefined, as Compose requires)."""
    top = load(root.read_text())
    services = dict(top.get("services") or {})
    for entry in top.get("include", []):
        path = entry if isinstance(entry, str) else entry["path"]
        path = path[0] if isinstance(path, list) else path
        included = project(root.parent / path)
        clash = set(services) & set(included["services"])
        assert not clash, f"{path} redefines {sorted(clash)}"
        services.update(included["services"])
    return {**top, "services": services}


def known_images() -> set[str]:
    """The references deploy/images.txt lists."""
    lines = (line.strip() for line in IMAGES.read_text().splitlines())
    return {line for line in lines if line and not line.startswith("#")}


def docker_hub_repository(image: str) -> str | None:
    """owner/name of an image on Docker Hub (its registry when none is named), or None elsewhere."""
    parts = image.split("@", 1)[0].split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        if parts[0] not in ("docker.io", "index.docker.io", "registry-1.docker.io"):
            return None
        parts = parts[1:]
    parts[-1] = parts[-1].split(":", 1)[0]
    return "/".join(parts if len(parts) > 1 else ["library", *parts])


def active(services: dict[str, Any], profiles: set[str]) -> set[str]:
    """The services `docker compose up` starts with these profiles active."""
    return {name for name, service in services.items() if not set(service.get("profiles") or []) - profiles}


def image_and_profile_problems(compose: dict[str, Any]) -> list[str]:
    """Images not known to pull, and a default start (no profile) that needs a profiled service."""
    found = []
    services = compose["services"]
    known = known_images()
    for name, service in services.items():
        image = service.get("image")
        if image is None:
            continue
        if image not in known:
            found.append(f"{name}: {image} is not in deploy/images.txt")
        if docker_hub_repository(image) in GONE_IMAGES:
            found.append(f"{name}: {image} was deleted from Docker Hub")
    started = active(services, set())
    for name in sorted(started):
        for dependency in services[name].get("depends_on") or {}:
            if dependency not in started:
                found.append(f"{name} depends on {dependency}, which only a profile starts")
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {key: str(value) for key, value in env.items()}


def ports_of(service: dict[str, Any]) -> set[int]:
    """The container ports a service publishes."""
    found = set()
    for port in service.get("ports", []):
        target = port["target"] if isinstance(port, dict) else str(port).rsplit(":", 1)[-1]
        found.add(int(target))
    return found


def healthcheck_port(process: Process, service: dict[str, Any]) -> int:
    """The port a service's healthcheck asks."""
    command = " ".join(service["healthcheck"]["test"])
    found = re.search(r"127\.0\.0\.1[:/](\d+)", command)
    assert found, f"{process.name}: the healthcheck names no loopback port: {command}"
    return int(found.group(1))


def problems(compose: dict[str, Any]) -> list[str]:
    """Every way the compose file disagrees with the topology and the code; empty when none."""
    found: list[str] = []
    services = compose["services"]
    if set(services) != EXPECTED_SERVICES:
        found.append(f"services {sorted(services)} != {sorted(EXPECTED_SERVICES)}")
        return found
    for process in PROCESSES:
        service = services[process.name]
        if "healthcheck" not in service:
            found.append(f"{process.name}: no healthcheck")
            continue
        test = " ".join(service["healthcheck"]["test"])
        if healthcheck_port(process, service) != process.default_health_port:
            found.append(f"{process.name}: the healthcheck asks port {healthcheck_port(process, service)}")
        if process.health_service and process.health_service not in test:
            found.append(f"{process.name}: the healthcheck does not ask {process.health_service}")
        if process.module is not None and command_module(service["command"]) != process.module:
            found.append(f"{process.name}: command {service['command']} does not run {process.module}")
    for name, service in services.items():
        module = command_module(service.get("command") or [])
        if module is None:
            continue
        env = environment(service)
        missing = variables_needed(module) - set(env)
        unknown = set(env) - variables_known(module)
        if missing:
            found.append(f"{name}: {module} needs {sorted(missing)}")
        if unknown:
            found.append(f"{name}: sets {sorted(unknown)}, which {module} never reads")
        for process in (BY_NAME["jobs"], BY_NAME["providers"], BY_NAME["worker"]):
            variable = f"{process.name.upper()}_TARGET"
            if variable in env and env[variable] != f"{process.name}:{process.default_port}":
                found.append(f"{name}: {variable}={env[variable]}, not {process.name}:{process.default_port}")
        if "DATABASE_URL" in env and "@postgres:5432/" not in env["DATABASE_URL"]:
            found.append(f"{name}: DATABASE_URL does not point at the postgres service")
        if "REDIS_URL" in env and not env["REDIS_URL"].startswith("redis://redis:6379/"):
            found.append(f"{name}: REDIS_URL does not point at the redis service")
        if module in SERVING and not (wanted := listen_everywhere(module)).items() <= env.items():
            found.append(f"{name}: listens on loopback alone (set {sorted(wanted)} to 0.0.0.0)")
        if "MEDIA_DIR" in variables_needed(module):
            mounted = {str(volume).split(":")[1] for volume in service.get("volumes", []) if isinstance(volume, str)}
            if env.get("MEDIA_DIR") not in mounted:
                found.append(f"{name}: MEDIA_DIR {env.get('MEDIA_DIR')} is not a shared volume")
    if ports_of(services[ENVOY.name]) != {ENVOY.default_port}:
        found.append(f"envoy publishes {ports_of(services[ENVOY.name])}, not {ENVOY.default_port}")
    if ports_of(services["prometheus"]) != {9090}:
        found.append("prometheus does not publish 9090")
    if ports_of(services["grafana"]) != {3000}:
        found.append("grafana does not publish 3000")
    return found


def start_order_problems(compose: dict[str, Any]) -> list[str]:
    """depends_on must wait for health (or for the migration to finish) along the topology."""
    services = compose["services"]
    found = []
    for name, service in services.items():
        for dependency, rule in (service.get("depends_on") or {}).items():
            condition = rule["condition"]
            if condition == "service_healthy" and "healthcheck" not in services[dependency]:
                found.append(f"{name} waits for {dependency} to be healthy, which has no healthcheck")
            if dependency == "migrate" and condition != "service_completed_successfully":
                found.append(f"{name} does not wait for the migration to finish")
    waits = {name: set(service.get("depends_on") or {}) for name, service in services.items()}
    for name in ("jobs", "providers"):
        if "migrate" not in waits[name]:
            found.append(f"{name} starts before the migration")
    if "postgres" not in waits["migrate"]:
        found.append("migrate starts before postgres")
    if not {"jobs", "providers"} <= waits["worker"]:
        found.append("worker starts before jobs and providers")
    if not {"gateway", "jobs", "providers"} <= waits["envoy"]:
        found.append("envoy starts before its upstreams")
    return found


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE.read_text())


def test_the_compose_files_parse_as_the_compose_spec(compose: dict[str, Any]) -> None:
    root = PyCompose.from_yaml(ROOT_COMPOSE.read_text()).to_dict()

    assert set(compose["services"]) == EXPECTED_SERVICES
    assert root["include"] == [{"path": "deploy/docker-compose.yml", "env_file": ".env"}]


def test_every_image_is_known_to_pull_and_the_default_start_needs_no_profile() -> None:
    compose = project()
    services = compose["services"]

    assert set(services) == EXPECTED_SERVICES
    assert image_and_profile_problems(compose) == []
    assert {"minio", "minio-init"} == set(services) - active(services, set())
    assert all(services[name].get("profiles") == ["s3"] for name in ("minio", "minio-init"))
    assert active(services, {"s3"}) == EXPECTED_SERVICES


def test_the_default_media_backend_is_local(compose: dict[str, Any]) -> None:
    with_s3 = load(COMPOSE.read_text(), {**env_example(), "MEDIA_BACKEND": "s3"})

    for process in ("jobs", "worker", "gateway"):
        assert environment(compose["services"][process])["MEDIA_BACKEND"] == "local"
        assert environment(with_s3["services"][process])["MEDIA_BACKEND"] == "s3"


def test_every_image_in_the_list_is_pinned_by_a_tag() -> None:
    for image in known_images():
        assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), image


@pytest.mark.parametrize(
    ("service", "change", "complaint"),
    [
        (
            "minio",
            lambda s: s.__setitem__("image", "minio/minio:RELEASE.2025-04-22T22-12-26Z"),
            "deleted from Docker Hub",
        ),
        ("minio-init", lambda s: s.__setitem__("image", "docker.io/minio/mc:latest"), "not in deploy/images.txt"),
        ("redis", lambda s: s.__setitem__("image", "redis:8-alpine"), "not in deploy/images.txt"),
        (
            "jobs",
            lambda s: s["depends_on"].__setitem__("minio-init", {"condition": "service_started"}),
            "only a profile",
        ),
        ("minio-init", lambda s: s.pop("profiles"), "minio-init depends on minio"),
    ],
)
def test_the_checks_catch_an_unknown_image_or_a_profile_leak(service: str, change: Any, complaint: str) -> None:
    broken = copy.deepcopy(project())
    change(broken["services"][service])

    assert any(complaint in problem for problem in image_and_profile_problems(broken)), image_and_profile_problems(
        broken
    )


def test_docker_hub_names_are_read_as_docker_does() -> None:
    assert docker_hub_repository("minio/minio:RELEASE.2025-04-22T22-12-26Z") == "minio/minio"
    assert docker_hub_repository("docker.io/minio/mc") == "minio/mc"
    assert docker_hub_repository("postgres:15-alpine") == "library/postgres"
    assert docker_hub_repository("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z") is None
    assert docker_hub_repository("localhost:5000/minio/minio:1") is None


def test_a_malformed_compose_file_is_refused() -> None:
    broken = COMPOSE.read_text().replace("condition: service_healthy", "condition: service_is_up", 1)

    with pytest.raises(ValueError, match="service_is_up"):
        load(broken)


def test_compose_agrees_with_the_topology_and_the_code(compose: dict[str, Any]) -> None:
    assert problems(compose) == []
    assert start_order_problems(compose) == []


@pytest.mark.parametrize(
    ("service", "change", "complaint"),
    [
        ("jobs", lambda s: s["healthcheck"]["test"].__setitem__(5, "127.0.0.1:50099"), "healthcheck asks port"),
        ("worker", lambda s: s["environment"].pop("JOBS_TARGET"), "needs ['JOBS_TARGET']"),
        ("gateway", lambda s: s["environment"].__setitem__("JOBS_TARGT", "jobs:50051"), "never reads"),
        ("providers", lambda s: s.__setitem__("command", ["python", "-m", "services.jobs"]), "does not run"),
        ("envoy", lambda s: s.__setitem__("ports", ["8001:8001"]), "envoy publishes"),
        ("worker", lambda s: s["environment"].__setitem__("MEDIA_DIR", "/elsewhere"), "not a shared volume"),
        ("jobs", lambda s: s["environment"].pop("GRPC_BIND_HOST"), "listens on loopback alone"),
    ],
)
def test_the_checks_catch_a_broken_compose_file(
    compose: dict[str, Any], service: str, change: Any, complaint: str
) -> None:
    broken = copy.deepcopy(compose)
    change(broken["services"][service])

    assert any(complaint in problem for problem in problems(broken)), problems(broken)


def test_the_checks_catch_a_broken_start_order(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["jobs"]["depends_on"]["migrate"]["condition"] = "service_started"
    del broken["services"]["worker"]["depends_on"]["jobs"]

    assert len(start_order_problems(broken)) == 2


def test_env_example_drives_compose_and_names_nothing_unknown() -> None:
    used: set[str] = set()
    interpolate(COMPOSE.read_text(), env_example(), used)
    known = set().union(*(variables_known(module) for module in SETTINGS)) | OTHER_KNOWN

    assert used, "compose interpolates the database credentials and published ports"
    assert used <= set(env_example()), f"not in .env.example: {sorted(used - set(env_example()))}"
    assert set(env_example()) <= known | used, f"read by nothing: {sorted(set(env_example()) - known - used)}"


def test_env_example_lists_every_setting() -> None:
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    settings = {name.upper() for cls in SETTINGS.values() for name in cls.model_fields}

    assert settings <= listed, f"missing from .env.example: {sorted(settings - listed)}"


def test_the_envoy_config_compose_mounts_is_the_validated_one(compose: dict[str, Any]) -> None:
    mounts = [str(volume) for volume in compose["services"]["envoy"]["volumes"]]
    prometheus = [str(volume) for volume in compose["services"]["prometheus"]["volumes"]]

    assert "./envoy/envoy.yaml:/etc/envoy/envoy.yaml:ro" in mounts
    assert (COMPOSE.parent / "envoy" / "envoy.yaml").exists()
    assert "./prometheus:/etc/prometheus:ro" in prometheus


@pytest.fixture(scope="module")
async def local_system(template_database_url: str, redis_url: str) -> AsyncIterator[dict[str, str]]:
    """The processes of `make run` on free ports; answers the port variables."""
    database_url = await databases.create_database(template_database_url, template=template_database_url)
    try:
        with local_run(database_url, redis_url, name="compose", METRICS_BIND_HOST="127.0.0.1") as system:
            await asyncio.to_thread(system.process.wait_event, "run.ready", 120)
            yield system.ports
    finally:
        await databases.drop_database(database_url)


def localised(test: list[str], default_port: int, port: int) -> list[str]:
    """A compose healthcheck command as it would run on this machine: our python, our port."""
    command = [sys.executable if part == "python" else part for part in test[1:]]
    return [re.sub(rf"127\.0\.0\.1([:/]){default_port}\b", rf"127.0.0.1\g<1>{port}", part) for part in command]


async def test_every_healthcheck_command_passes_against_the_real_processes(
    compose: dict[str, Any], local_system: dict[str, str]
) -> None:
    settings = CoreSettings.model_validate({name.lower(): int(value) for name, value in local_system.items()})
    for process in PROCESSES:
        test = compose["services"][process.name]["healthcheck"]["test"]
        assert test[0] == "CMD"
        healthy = localised(test, process.default_health_port, process.health_port(settings))
        down = localised(test, process.default_health_port, free_port())

        passed = await asyncio.to_thread(subprocess.run, healthy, capture_output=True, text=True, timeout=30)
        failed = await asyncio.to_thread(subprocess.run, down, capture_output=True, text=True, timeout=30)

        assert passed.returncode == 0, f"{process.name}: {healthy}: {passed.stderr}"
        assert failed.returncode != 0, f"{process.name}: {down} passed with nothing listening"
