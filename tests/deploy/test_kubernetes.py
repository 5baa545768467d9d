"""The manifests of k8s/, rendered by kustomize, held to the code and to docs/contract.md.

Each overlay is rendered by the kubectl beside this Python (.venv/bin/kubectl, kustomize built
in). Built-in objects are validated by kubernetes-validate in strict mode, custom resources by
the schemas in crd_schemas/. Ports, health names and variables are read from the code
(services/topology.py, tests/support/deployment.py), so that a change there fails here until
k8s/ follows. Each check returns its problems, so that the mutation tests can show it fails.
"""

from __future__ import annotations

import base64
import copy
import functools
import ipaddress
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from referencing import Registry, Resource

from services.core.channels import channel_options
from services.core.generators.registry import RegistryConfig
from services.core.grpc_server import LIVENESS
from services.core.queues import QUEUES
from services.core.settings import CoreSettings
from services.core.tasks import queue_keys
from services.topology import BY_NAME, Process
from tests.support.deployment import (
    PROVIDER_KEYS,
    ROOT,
    SECRETS,
    command_module,
    listen_everywhere,
    reads_provider_keys,
    secrets_read,
    sources,
    variables_known,
    variables_needed,
)

K8S = ROOT / "k8s"
OVERLAYS = ("dev", "prod")
KUBECTL = Path(sys.executable).parent / "kubectl"
KUBERNETES_VERSION = "1.37.0"
CRD_SCHEMAS = Path(__file__).parent / "crd_schemas"
RULES_FILE = ROOT / "deploy" / "prometheus" / "rules" / "videogen.rules.yml"
PROMETHEUS_RULE = K8S / "components" / "prometheus-operator" / "prometheus-rule.yaml"
SECRET_TEMPLATE = K8S / "base" / "secret.example.yaml"
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
IMAGES = {"dev": "videogen:dev", "prod": "registry.example.com/videogen:0.1.0"}
ENVOY_IMAGE = "envoyproxy/envoy:v1.40.0"
ENVOY_ARGS = ["-c", "/etc/envoy/envoy.yaml", "--disable-hot-restart", "--concurrency", "2", "--log-level", "info",
              "--file-flush-interval-msec", "1000"]  # fmt: skip
# Who calls whom ("*": clients from anywhere); Prometheus, from the namespace `monitoring`,
# reads every metrics port besides.
CALLERS = {
    "envoy": {"*"},
    "gateway": {"envoy"},
    "jobs": {"envoy", "gateway", "worker"},
    "providers": {"envoy", "gateway", "worker"},
    "worker": {"gateway"},
}
MONITORING = "monitoring"
# Envoy's STRICT_DNS clusters, and the services' round_robin channels, need every pod's address
# from DNS.
HEADLESS = {"gateway", "jobs", "providers"}
# The gRPC targets the Python processes read, by the Service each must name. WorkerService (the
# gateway's statistics) is answered by any worker for all: its cluster IP is enough.
GRPC_TARGETS = {"JOBS_TARGET": "jobs", "PROVIDERS_TARGET": "providers", "WORKER_TARGET": "worker"}

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Rendered:
    """The objects of one rendered overlay."""

    overlay: str
    objects: tuple[Manifest, ...]

    def all(self, kind: str) -> list[Manifest]:
        """Every object of a kind."""
        return [obj for obj in self.objects if obj["kind"] == kind]

    def named(self, kind: str, name: str) -> Manifest | None:
        """The object of a kind with a name, if rendered."""
        return next((obj for obj in self.all(kind) if obj["metadata"]["name"] == name), None)

    def deployments(self) -> dict[str, Manifest]:
        """The Deployments by name."""
        return {obj["metadata"]["name"]: obj for obj in self.all("Deployment")}

    def workloads(self) -> list[Manifest]:
        """Every object with a pod template."""
        return self.all("Deployment") + self.all("Job")

    @property
    def namespace(self) -> str:
        """The namespace every namespaced object is in."""
        return str(self.all("Deployment")[0]["metadata"]["namespace"])


def render(overlay_dir: Path) -> Rendered:
    """`kubectl kustomize overlay_dir`, parsed."""
    result = subprocess.run(
        [str(KUBECTL), "kustomize", str(overlay_dir)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kustomize {overlay_dir}: {result.stderr}"
    return Rendered(overlay_dir.name, tuple(obj for obj in yaml.safe_load_all(result.stdout) if obj))


@functools.cache
def rendered(overlay: str) -> Rendered:
    """An overlay of this repository, rendered once per run."""
    return render(K8S / "overlays" / overlay)


def pod_spec(workload: Manifest) -> Manifest:
    """The pod template's spec."""
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def containers(workload: Manifest) -> list[Manifest]:
    """Every container of a workload, init containers included."""
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_container(deployment: Manifest) -> Manifest:
    """The container named like its Deployment."""
    name = deployment["metadata"]["name"]
    found: list[Manifest] = [c for c in pod_spec(deployment)["containers"] if c["name"] == name]
    assert len(found) == 1, f"{name}: no single container named {name}"
    return found[0]


def module_of(container: Manifest) -> str | None:
    """The module of a `python -m module` container."""
    return command_module([*container.get("command", []), *container.get("args", [])])


def declared_ports(container: Manifest) -> dict[str, int]:
    """The container's ports by name."""
    return {port.get("name", ""): int(port["containerPort"]) for port in container.get("ports", [])}


def resolve_port(container: Manifest, port: int | str) -> int | None:
    """A port number or name as the container's port number, None when it has no such port."""
    ports = declared_ports(container)
    if isinstance(port, str):
        return ports.get(port)
    return port if port in ports.values() else None


def matches(selector: Manifest, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels only) selects these labels."""
    assert "matchExpressions" not in selector, "the checks read matchLabels only"
    wanted: dict[str, str] = selector.get("matchLabels", {})
    return wanted.items() <= labels.items()


def secret_templates() -> dict[str, Manifest]:
    """The Secrets of the template, by name."""
    return {document["metadata"]["name"]: document for document in yaml.safe_load_all(SECRET_TEMPLATE.read_text())}


def template_keys(name: str) -> set[str]:
    """The keys of one Secret of the template."""
    template = secret_templates().get(name, {})
    return set(template.get("stringData", {})) | set(template.get("data", {}))


def secret_keys(cluster: Rendered, name: str) -> set[str]:
    """A rendered Secret's keys; an operator's Secret (not rendered) has the template's."""
    secret = cluster.named("Secret", name)
    if secret is not None:
        return set(secret.get("data", {})) | set(secret.get("stringData", {}))
    return template_keys(name)


def secret_references(container: Manifest) -> dict[str, Manifest]:
    """The container's variables taken from a Secret's key, and each one's secretKeyRef."""
    return {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in container.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }


def environment(cluster: Rendered, container: Manifest) -> dict[str, str | None]:
    """The container's variables (a Secret's values are None: only its keys are known)."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            config = cluster.named("ConfigMap", source["configMapRef"]["name"]) or {}
            env.update({prefix + key: str(value) for key, value in config.get("data", {}).items()})
        if "secretRef" in source:
            env.update(dict.fromkeys((prefix + key for key in secret_keys(cluster, source["secretRef"]["name"])), None))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def expected_ports(process: Process) -> dict[str, int]:
    """The named container ports of a process by default (docs/contract.md)."""
    if process.protocol == "grpc":
        return {"grpc": process.default_port, "metrics": process.default_metrics_port}
    ports = {"http": process.default_port}
    if process.default_metrics_port != process.default_port:
        ports["metrics"] = process.default_metrics_port
    return ports


def probe_port(container: Manifest, probe: Manifest) -> int | None:
    """The port number a probe asks."""
    for handler in ("grpc", "httpGet", "tcpSocket"):
        if handler in probe:
            return resolve_port(container, probe[handler]["port"])
    return None


# --- Checks: each answers its problems -------------------------------------------------------


def validation_problems(cluster: Rendered) -> list[str]:
    """Every object against its schema: kubernetes-validate (strict) or crd_schemas/."""
    problems = []
    for obj in cluster.objects:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        validator = crd_validators().get((obj["apiVersion"], obj["kind"]))
        if validator is not None:
            problems += [f"{where}: {'.'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{where}: {'.'.join(map(str, error.path))}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(f"{where}: no schema for {obj['apiVersion']} {obj['kind']}")
    return problems


def probe_port_problems(cluster: Rendered) -> list[str]:
    """Container ports, the port variables and every probe's port agree with services/topology.py."""
    problems = []
    deployments = cluster.deployments()
    if set(deployments) != set(BY_NAME):
        problems.append(f"Deployments {sorted(deployments)}, processes {sorted(BY_NAME)}")
    for name, deployment in deployments.items():
        process = BY_NAME.get(name)
        if process is None:
            continue
        container = main_container(deployment)
        declared = declared_ports(container)
        if declared != expected_ports(process):
            problems.append(f"{name}: container ports {declared}, topology says {expected_ports(process)}")
        env = environment(cluster, container)
        for setting in filter(None, (process.port_setting, process.metrics_port_setting, process.health_port_setting)):
            value, default = env.get(setting.upper()), CoreSettings.model_fields[setting].default
            if value is not None and int(value) != default:
                problems.append(f"{name}: {setting.upper()}={value}, but the manifests use {default}")
        for kind in PROBES:
            probe = container.get(kind)
            if probe is None:
                continue
            port = probe_port(container, probe)
            if port is None or port not in expected_ports(process).values():
                problems.append(f"{name}: {kind} asks a port the process does not serve")
            elif kind == "readinessProbe" and port != process.default_health_port:
                problems.append(f"{name}: readiness asks {port}, its health port is {process.default_health_port}")
    return problems


def health_name_problems(cluster: Rendered) -> list[str]:
    """Readiness asks the process's own health (gRPC name or path), liveness asks `liveness`."""
    problems = []
    for name, deployment in cluster.deployments().items():
        process, container = BY_NAME.get(name), main_container(deployment)
        if process is None:
            continue
        readiness, liveness = container.get("readinessProbe"), container.get("livenessProbe")
        if readiness is None or liveness is None:
            problems.append(f"{name}: needs a readiness and a liveness probe")
            continue
        if process.module is not None and "startupProbe" not in container:
            problems.append(f"{name}: a Python process needs a startupProbe (imports and connections take time)")
        if process.protocol == "grpc":
            if readiness.get("grpc", {}).get("service") != process.health_service:
                problems.append(f"{name}: readiness must ask gRPC health for {process.health_service}")
            for kind in ("livenessProbe", "startupProbe"):
                probe = container.get(kind)
                if probe is not None and probe.get("grpc", {}).get("service") != LIVENESS:
                    problems.append(f"{name}: {kind} must ask gRPC health for {LIVENESS!r}")
        elif readiness.get("httpGet", {}).get("path") != process.health_path:
            problems.append(f"{name}: readiness must ask {process.health_path}")
    return problems


def variable_problems(cluster: Rendered) -> list[str]:
    """Each `python -m module` container gets what the module needs, and nothing it does not read."""
    problems = []
    for workload in cluster.workloads():
        for container in containers(workload):
            module = module_of(container)
            if module is None:
                continue
            where = f"{workload['kind']}/{workload['metadata']['name']} ({module})"
            env = environment(cluster, container)
            if missing := variables_needed(module) - env.keys():
                problems.append(f"{where}: missing {sorted(missing)}")
            if unknown := env.keys() - variables_known(module):
                problems.append(f"{where}: sets variables it never reads {sorted(unknown)}")
    return problems


def network_edges(cluster: Rendered) -> tuple[set[tuple[str, str, int]], list[str]]:
    """What the NetworkPolicies allow as (source, Deployment, port), and ports no pod serves."""
    edges: set[tuple[str, str, int]] = set()
    problems = []
    pods = {name: pod_labels(d) for name, d in cluster.deployments().items()}
    for policy in cluster.all("NetworkPolicy"):
        targets = [name for name, labels in pods.items() if matches(policy["spec"]["podSelector"], labels)]
        for rule in policy["spec"].get("ingress", []):
            sources = {"*"} if not rule.get("from") else set()
            for peer in rule.get("from", []):
                if "podSelector" in peer and "namespaceSelector" not in peer:
                    sources |= {name for name, labels in pods.items() if matches(peer["podSelector"], labels)}
                else:
                    namespace = peer.get("namespaceSelector", {}).get("matchLabels", {})
                    sources.add(namespace.get("kubernetes.io/metadata.name", f"unknown peer {peer}"))
            for target in targets:
                container = main_container(cluster.deployments()[target])
                for port in rule.get("ports") or [{"port": "every port"}]:
                    number = resolve_port(container, port["port"])
                    if number is None:
                        problems.append(f"{policy['metadata']['name']}: {target} serves no port {port['port']}")
                        continue
                    edges |= {(source, target, number) for source in sources}
    return edges, problems


def pod_labels(workload: Manifest) -> dict[str, str]:
    """The labels of a workload's pods."""
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return labels


def expected_edges() -> set[tuple[str, str, int]]:
    """The calls of CALLERS on each process's port, and Prometheus on every metrics port."""
    calls = {(caller, name, BY_NAME[name].default_port) for name, callers in CALLERS.items() for caller in callers}
    scrapes = {(MONITORING, name, process.default_metrics_port) for name, process in BY_NAME.items()}
    return calls | scrapes


def monitors(cluster: Rendered) -> list[Manifest]:
    """The prometheus-operator's ServiceMonitors and PodMonitors."""
    return cluster.all("ServiceMonitor") + cluster.all("PodMonitor")


@dataclass(frozen=True)
class Scrape:
    """What a monitor selects (names and labels), their named ports, and its endpoints."""

    selected: dict[str, dict[str, str]]
    ports: dict[str, int | str]
    endpoints: list[Manifest]
    # The `job` of its targets without jobLabel (prometheus-operator's naming).
    default_job: str


def scrape_of(cluster: Rendered, monitor: Manifest) -> Scrape:
    """The Services (ServiceMonitor) or the Deployments' pods (PodMonitor) a monitor scrapes."""
    spec = monitor["spec"]
    if monitor["kind"] == "ServiceMonitor":
        services = [s for s in cluster.all("Service") if matches(spec["selector"], s["metadata"]["labels"])]
        selected = {s["metadata"]["name"]: s["metadata"]["labels"] for s in services}
        ports = {p["name"]: p["targetPort"] for s in services for p in s["spec"]["ports"]}
        return Scrape(selected, ports, spec["endpoints"], next(iter(selected), ""))
    pods = {n: d for n, d in cluster.deployments().items() if matches(spec["selector"], pod_labels(d))}
    ports = {name: name for d in pods.values() for name in declared_ports(main_container(d))}
    default_job = f"{cluster.namespace}/{monitor['metadata']['name']}"
    return Scrape({n: pod_labels(d) for n, d in pods.items()}, ports, spec["podMetricsEndpoints"], default_job)


def monitor_problems(cluster: Rendered) -> list[str]:
    """Each monitor selects one process and scrapes its metrics port and path as job <process>."""
    problems = []
    for monitor in monitors(cluster):
        scrape, where = scrape_of(cluster, monitor), f"{monitor['kind']}/{monitor['metadata']['name']}"
        if len(scrape.selected) != 1 or next(iter(scrape.selected)) not in BY_NAME:
            problems.append(f"{where}: selects {sorted(scrape.selected)}, not one process")
            continue
        name, labels = next(iter(scrape.selected.items()))
        process, container = BY_NAME[name], main_container(cluster.deployments()[name])
        job_label = monitor["spec"].get("jobLabel")
        job = labels.get(job_label) if job_label else scrape.default_job
        if job != name:
            problems.append(f"{where}: its targets' job is {job}, the alerting rules expect {name}")
        for endpoint in scrape.endpoints:
            port = scrape.ports.get(endpoint["port"])
            if port is None or resolve_port(container, port) != process.default_metrics_port:
                problems.append(f"{where}: port {endpoint['port']} is not {name}'s metrics port")
            if endpoint.get("path") != process.metrics_path:
                problems.append(f"{where}: path {endpoint.get('path')}, {name} serves {process.metrics_path}")
    return problems


# --- Schemas of the custom resources ---------------------------------------------------------


def crd_schemas() -> list[Manifest]:
    """The JSON schemas of crd_schemas/."""
    return [json.loads(path.read_text()) for path in sorted(CRD_SCHEMAS.glob("*.json"))]


@functools.cache
def crd_validators() -> dict[tuple[str, str], Any]:
    """A validator per (apiVersion, kind) that crd_schemas/ describes."""
    schemas = crd_schemas()
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas
    )
    validators = {}
    for schema in schemas:
        properties = schema.get("properties", {})
        if "kind" in properties:
            key = (properties["apiVersion"]["const"], properties["kind"]["const"])
            validators[key] = jsonschema.Draft202012Validator(schema, registry=registry)
    return validators


def open_objects(schema: Any, where: str = "") -> Iterator[str]:
    """The places of a schema where an object with properties allows unknown ones."""
    if isinstance(schema, dict):
        if "properties" in schema and schema.get("additionalProperties") is not False:
            yield where or "/"
        for key, value in schema.items():
            yield from open_objects(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for index, value in enumerate(schema):
            yield from open_objects(value, f"{where}/{index}")


# --- Rendering and validity ------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_is_valid_for_kubernetes_or_its_crd(overlay: str) -> None:
    assert validation_problems(rendered(overlay)) == []


def test_crd_schemas_are_valid_and_refuse_unknown_fields() -> None:
    for schema in crd_schemas():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert list(open_objects(schema)) == [], schema["$id"]


def test_secret_template_is_valid_names_every_key_and_is_never_applied() -> None:
    templates = secret_templates()
    for template in templates.values():
        kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)
    registry = RegistryConfig.model_validate(yaml.safe_load((K8S / "base" / "config" / "providers.yaml").read_text()))
    read = {key for module in ("services.jobs", "services.providers", "services.worker", "services.gateway",
            "services.core.migrate") for key in secrets_read(module)}  # fmt: skip

    assert set(templates) == {SECRETS, PROVIDER_KEYS}
    assert template_keys(SECRETS) == read
    assert {provider.api_key_env for provider in registry.providers} - {None} <= template_keys(PROVIDER_KEYS)
    for kustomization in K8S.rglob("kustomization.yaml"):
        listed = json.dumps(yaml.safe_load(kustomization.read_text()))
        assert SECRET_TEMPLATE.name not in listed, kustomization


def test_envoy_config_is_a_copy_of_deploy_envoy() -> None:
    assert (K8S / "base" / "envoy" / "envoy.yaml").read_bytes() == (ROOT / "deploy/envoy/envoy.yaml").read_bytes()


def test_the_generated_envoy_configurations_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "render_k8s_envoy.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


# --- Processes: ports, probes, variables -----------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_container_and_probe_ports_follow_the_topology(overlay: str) -> None:
    assert probe_port_problems(rendered(overlay)) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_readiness_asks_its_own_health_and_liveness_asks_liveness(overlay: str) -> None:
    assert health_name_problems(rendered(overlay)) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_command_gets_the_variables_it_needs_and_no_others(overlay: str) -> None:
    assert variable_problems(rendered(overlay)) == []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_python_process_listens_on_the_pod_address(overlay: str) -> None:
    cluster = rendered(overlay)
    for name, deployment in cluster.deployments().items():
        container = main_container(deployment)
        if module_of(container) is not None:
            env = environment(cluster, container)
            wanted = listen_everywhere(module_of(container) or "")
            assert {key: env.get(key) for key in wanted} == wanted, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_wait_for_the_migration_job(overlay: str) -> None:
    cluster = rendered(overlay)
    jobs = cluster.all("Job")
    assert [module_of(container) for job in jobs for container in containers(job)] == ["services.core.migrate"]
    assert jobs[0]["spec"]["backoffLimit"] > 0
    assert jobs[0]["spec"]["ttlSecondsAfterFinished"] > 0
    for deployment in cluster.deployments().values():
        env = environment(cluster, main_container(deployment))
        assert module_of(main_container(deployment)) is None or env.get("MIGRATE_ON_START") == "false"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_and_envoy_arguments(overlay: str) -> None:
    for workload in rendered(overlay).workloads():
        for container in containers(workload):
            if module_of(container) is not None:
                assert container["image"] == IMAGES[overlay]
            else:
                assert (container["image"], container.get("args")) == (ENVOY_IMAGE, ENVOY_ARGS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_worker_may_drain_longest(overlay: str) -> None:
    graces = {}
    for name, deployment in rendered(overlay).deployments().items():
        container, grace = main_container(deployment), pod_spec(deployment)["terminationGracePeriodSeconds"]
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        shutdown = environment(rendered(overlay), container).get("SHUTDOWN_GRACE")
        drain = float(shutdown) if shutdown else CoreSettings.model_fields["shutdown_grace"].default
        assert grace > pre_stop + (drain if module_of(container) else 0), name
        graces[name] = grace
    assert max(graces, key=lambda name: graces[name]) == "worker"


# --- Security and storage --------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_non_root_with_a_read_only_root_file_system(overlay: str) -> None:
    for workload in rendered(overlay).workloads():
        spec, name = pod_spec(workload), workload["metadata"]["name"]
        pod = spec["securityContext"]
        # The users of the images: deploy/Dockerfile's, and envoyproxy/envoy's.
        user = 10001 if any(module_of(container) for container in containers(workload)) else 101
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == pod["runAsGroup"] == user, name
        assert pod["fsGroup"] > 0 and pod["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        # Service links would set REDIS_PORT=tcp://... and the like, which the settings read.
        assert spec["enableServiceLinks"] is False, name
        for container in containers(workload):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False, name
            assert context["runAsNonRoot"] is True and context["capabilities"] == {"drop": ["ALL"]}, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    for workload in rendered(overlay).workloads():
        for container in containers(workload):
            resources = container["resources"]
            for bound in ("requests", "limits"):
                assert set(resources[bound]) >= {"cpu", "memory"}, (workload["metadata"]["name"], bound)


def writable_dirs(module: str, env: dict[str, str | None]) -> dict[str, str]:
    """The directories a module writes (or reads from a mount), and the volume kind each needs."""
    dirs = {"/tmp": "emptyDir", str(env["DATA_DIR"]): "emptyDir"}
    if "MEDIA_DIR" in variables_needed(module):
        dirs[str(env["MEDIA_DIR"])] = "persistentVolumeClaim"
    if any("settings.providers_config" in source.read_text() for source in sources(module)):
        dirs[str(PurePosixPath(str(env["PROVIDERS_CONFIG"])).parent)] = "configMap"
    return dirs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_directory_a_process_uses_is_a_volume(overlay: str) -> None:
    cluster = rendered(overlay)
    for workload in cluster.workloads():
        volumes = {volume["name"]: volume for volume in pod_spec(workload).get("volumes", [])}
        for container in containers(workload):
            module = module_of(container)
            mounts = {mount["mountPath"]: volumes[mount["name"]] for mount in container.get("volumeMounts", [])}
            needed = writable_dirs(module, environment(cluster, container)) if module else {"/tmp": "emptyDir"}
            for path, kind in needed.items():
                assert kind in mounts.get(path, {}), f"{workload['metadata']['name']}: {path} needs a {kind}"
                if kind == "persistentVolumeClaim":
                    assert mounts[path][kind]["claimName"] == "videogen-media"
                if kind == "configMap":
                    key = PurePosixPath(str(environment(cluster, container)["PROVIDERS_CONFIG"])).name
                    config = cluster.named("ConfigMap", mounts[path][kind]["name"])
                    assert config is not None and key in config["data"]


def test_media_is_shared_read_write_many_in_production() -> None:
    claim = rendered("prod").named("PersistentVolumeClaim", "videogen-media")
    assert claim is not None and claim["spec"]["accessModes"] == ["ReadWriteMany"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_provider_registry_loads_and_its_keys_reach_its_readers(overlay: str) -> None:
    cluster = rendered(overlay)
    for name in ("providers", "worker"):
        container = main_container(cluster.deployments()[name])
        volume = next(v for v in pod_spec(cluster.deployments()[name])["volumes"] if "configMap" in v)
        config = cluster.named("ConfigMap", volume["configMap"]["name"])
        assert config is not None
        registry = RegistryConfig.model_validate(yaml.safe_load(config["data"]["providers.yaml"]))
        keys = {provider.api_key_env for provider in registry.providers} - {None}
        assert keys <= environment(cluster, container).keys(), name


# --- Services, Envoy, network ----------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_selects_one_deployment_and_targets_its_ports(overlay: str) -> None:
    cluster = rendered(overlay)
    services = {s["metadata"]["name"]: s for s in cluster.all("Service") if s["spec"].get("type") != "ExternalName"}
    assert set(services) == set(BY_NAME)
    for name, service in services.items():
        selected = [
            d
            for d in cluster.deployments().values()
            if matches({"matchLabels": service["spec"]["selector"]}, pod_labels(d))
        ]
        assert [d["metadata"]["name"] for d in selected] == [name]
        for port in service["spec"]["ports"]:
            assert port["name"] in {"grpc", "http", "metrics"}, name
            assert resolve_port(main_container(selected[0]), port["targetPort"]) == port["port"], (name, port)
        assert (service["spec"].get("clusterIP") == "None") == (name in HEADLESS), name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_envoy_upstreams_are_headless_services_on_served_ports(overlay: str) -> None:
    cluster = rendered(overlay)
    config = yaml.safe_load((K8S / "base" / "envoy" / "envoy.yaml").read_text())
    upstreams = [c for c in config["static_resources"]["clusters"] if c["type"] == "STRICT_DNS"]
    assert {c["name"] for c in upstreams} == HEADLESS
    for cluster_config in upstreams:
        for group in cluster_config["load_assignment"]["endpoints"]:
            for endpoint in group["lb_endpoints"]:
                address = endpoint["endpoint"]["address"]["socket_address"]
                service = cluster.named("Service", address["address"])
                assert service is not None and service["spec"]["clusterIP"] == "None"
                assert address["port_value"] == BY_NAME[address["address"]].default_port
    listeners = {
        listener["name"]: listener["address"]["socket_address"]["port_value"]
        for listener in config["static_resources"]["listeners"]
    }
    assert listeners == {"edge": BY_NAME["envoy"].default_port, "metrics": BY_NAME["envoy"].default_metrics_port}


def grpc_target_problems(cluster: Rendered) -> list[str]:
    """Each gRPC target that is not `dns:///<service>:<port>`, or names a Service that should be
    headless (so that the clients see every pod) and is not."""
    found = []
    for workload in cluster.workloads():
        for container in containers(workload):
            env = environment(cluster, container)
            for variable, name in GRPC_TARGETS.items():
                wanted = f"dns:///{name}:{BY_NAME[name].default_port}"
                if variable in env and env[variable] != wanted:
                    found.append(f"{container['name']}: {variable}={env[variable]}, not {wanted}")
                service = cluster.named("Service", name)
                if variable in env and name in HEADLESS and (service or {}).get("spec", {}).get("clusterIP") != "None":
                    found.append(f"{container['name']}: {variable} names {name}, which is not headless")
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_grpc_target_resolves_every_pod_of_a_headless_service(overlay: str) -> None:
    cluster = rendered(overlay)

    assert grpc_target_problems(cluster) == []
    assert any("JOBS_TARGET" in environment(cluster, main_container(d)) for d in cluster.deployments().values())


def test_a_grpc_target_without_dns_or_on_a_cluster_ip_is_caught() -> None:
    objects = copy.deepcopy(list(rendered("dev").objects))
    config = next(o for o in objects if o["kind"] == "ConfigMap" and "JOBS_TARGET" in o.get("data", {}))
    config["data"]["JOBS_TARGET"] = "jobs:50051"
    providers = next(o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "providers")
    del providers["spec"]["clusterIP"]

    problems = grpc_target_problems(Rendered("dev", tuple(objects)))

    assert any("JOBS_TARGET=jobs:50051" in problem for problem in problems), problems
    assert any("providers, which is not headless" in problem for problem in problems), problems


def test_the_services_channels_balance_round_robin_with_keepalive() -> None:
    options = dict(channel_options())

    assert json.loads(str(options["grpc.service_config"]))["loadBalancingConfig"] == [{"round_robin": {}}]
    assert int(options["grpc.keepalive_time_ms"]) > 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_envoy_sheds_load_before_its_container_runs_out_of_memory(overlay: str) -> None:
    config = yaml.safe_load((K8S / "base" / "envoy" / "envoy.yaml").read_text())
    heap = next(
        monitor["typed_config"]["max_heap_size_bytes"]
        for monitor in config["overload_manager"]["resource_monitors"]
        if monitor["name"] == "envoy.resource_monitors.fixed_heap"
    )
    limit = quantity(main_container(rendered(overlay).deployments()["envoy"])["resources"]["limits"]["memory"])

    # What is not heap (the binary, thread stacks, kernel buffers) needs the rest.
    assert heap <= 0.85 * limit


def envoy_files(cluster: Rendered) -> tuple[Manifest, dict[str, str]]:
    """Envoy's main container, and the files of its volumes by path (ConfigMaps' data; a Secret's
    keys, with empty text)."""
    deployment = cluster.deployments()["envoy"]
    container, volumes = main_container(deployment), {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    files: dict[str, str] = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "configMap" in volume:
            config = cluster.named("ConfigMap", volume["configMap"]["name"]) or {"data": {}}
            files |= {f"{mount['mountPath']}/{key}": text for key, text in config["data"].items()}
        if "secret" in volume:
            keys = ("tls.crt", "tls.key") if volume["secret"]["secretName"] in certificate_secrets(cluster) else ()
            files |= {f"{mount['mountPath']}/{key}": "" for key in keys}
    return container, files


def certificate_secrets(cluster: Rendered) -> set[str]:
    """The Secrets cert-manager fills (tls.crt, tls.key)."""
    return {certificate["spec"]["secretName"] for certificate in cluster.all("Certificate")}


def edge_tls(files: dict[str, str]) -> Manifest | None:
    """The edge listener's TLS context in Envoy's mounted configuration, None without TLS."""
    config = yaml.safe_load(files["/etc/envoy/envoy.yaml"])
    edge = next(item for item in config["static_resources"]["listeners"] if item["name"] == "edge")
    socket: Manifest | None = edge["filter_chains"][0].get("transport_socket")
    return socket["typed_config"]["common_tls_context"] if socket else None


def test_prod_serves_tls_with_the_certificate_cert_manager_issues() -> None:
    cluster = rendered("prod")
    (certificate,) = cluster.all("Certificate")
    _, files = envoy_files(cluster)
    context = edge_tls(files)

    assert certificate["spec"]["issuerRef"]["kind"] == "ClusterIssuer" and certificate["spec"]["dnsNames"]
    assert context is not None
    assert context["tls_params"]["tls_minimum_protocol_version"] == "TLSv1_2"
    assert context["alpn_protocols"] == ["h2", "http/1.1"]
    (sds,) = context["tls_certificate_sds_secret_configs"]
    # The SDS file is mounted, and names the certificate's files in the mounted Secret.
    secret = yaml.safe_load(files[sds["sds_config"]["path_config_source"]["path"]])["resources"][0]
    for kind in ("certificate_chain", "private_key"):
        assert secret["tls_certificate"][kind]["filename"] in files, kind


def test_dev_serves_plain_http_without_cert_manager() -> None:
    cluster = rendered("dev")
    _, files = envoy_files(cluster)

    assert cluster.all("Certificate") == []
    assert edge_tls(files) is None
    assert files["/etc/envoy/envoy.yaml"] == (ROOT / "deploy" / "envoy" / "envoy.yaml").read_text()


def test_an_unknown_certificate_field_is_caught_by_the_crd_schema() -> None:
    certificate = copy.deepcopy(rendered("prod").all("Certificate")[0])
    certificate["spec"]["dnsName"] = certificate["spec"].pop("dnsNames")

    problems = validation_problems(Rendered("prod", (certificate,)))
    assert any("dnsName" in problem for problem in problems), problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_deny_ingress_and_allow_only_the_calls(overlay: str) -> None:
    cluster = rendered(overlay)
    deny = [
        p
        for p in cluster.all("NetworkPolicy")
        if p["spec"]["podSelector"] == {} and p["spec"]["policyTypes"] == ["Ingress"] and not p["spec"].get("ingress")
    ]
    assert len(deny) == 1
    edges, problems = network_edges(cluster)
    assert problems == []
    assert edges == expected_edges()


# Where a webhook must never reach from the jobs pods, and where it must.
INTERNAL_ADDRESSES = (
    "10.0.0.7", "172.20.1.1", "192.168.1.10", "127.0.0.1", "169.254.169.254", "169.254.0.1", "100.64.0.1",
    "100.127.255.254", "0.0.0.1", "::1", "fd00:ec2::254", "fe80::1", "::ffff:10.0.0.7", "::ffff:169.254.169.254",
)  # fmt: skip
PUBLIC_ADDRESSES = ("93.184.216.34", "8.8.8.8", "52.216.0.1", "2606:4700::6810:85e5")
DATABASE_PORTS = (5432, 6379)
DNS_PORT = 53


def egress_policies(cluster: Rendered, name: str) -> list[Manifest]:
    """The policies that restrict the egress of a Deployment's pods."""
    labels = pod_labels(cluster.deployments()[name])
    return [
        policy
        for policy in cluster.all("NetworkPolicy")
        if "Egress" in policy["spec"]["policyTypes"] and matches(policy["spec"]["podSelector"], labels)
    ]


def egress_allows(policies: list[Manifest], address: str, port: int, protocol: str = "TCP") -> bool:
    """Whether the policies let a pod connect to address:port (addresses outside the cluster:
    pod and namespace selectors never match them)."""
    ip = ipaddress.ip_address(address)
    for rule in (rule for policy in policies for rule in policy["spec"].get("egress", [])):
        ports = rule.get("ports") or [{"protocol": protocol}]
        if not any(p.get("protocol", "TCP") == protocol and p.get("port", port) == port for p in ports):
            continue
        peers = rule.get("to") or [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]
        for block in (peer["ipBlock"] for peer in peers if "ipBlock" in peer):
            inside = ip.version == ipaddress.ip_network(block["cidr"]).version and ip in ipaddress.ip_network(
                block["cidr"]
            )
            excepted = any(
                ip.version == ipaddress.ip_network(cidr).version and ip in ipaddress.ip_network(cidr)
                for cidr in block.get("except", [])
            )
            if inside and not excepted:
                return True
    return False


def egress_problems(cluster: Rendered) -> list[str]:
    """The jobs pods reach the internet, DNS and the databases' ports, and no internal address
    on any other port; pod and namespace selectors are used for DNS alone."""
    policies = egress_policies(cluster, "jobs")
    problems = [] if policies else ["no egress policy selects the jobs pods"]
    for address in INTERNAL_ADDRESSES:
        for port in (80, 443, 8080, 9000):
            if egress_allows(policies, address, port):
                problems.append(f"jobs may reach {address}:{port}")
    for address in PUBLIC_ADDRESSES:
        for port in (80, 443, 8443):
            if not egress_allows(policies, address, port):
                problems.append(f"jobs may not reach {address}:{port}")
    for port in DATABASE_PORTS:
        if not egress_allows(policies, "10.20.30.40", port):
            problems.append(f"jobs may not reach a private database on {port}")
    for rule in (rule for policy in policies for rule in policy["spec"]["egress"]):
        selectors = [peer for peer in rule.get("to", []) if "ipBlock" not in peer]
        if selectors and {p["port"] for p in rule.get("ports", [{"port": "any"}])} != {DNS_PORT}:
            problems.append(f"a rule lets jobs reach pods beyond DNS: {rule}")
        if selectors and not {"UDP", "TCP"} <= {p.get("protocol", "TCP") for p in rule["ports"]}:
            problems.append("DNS needs UDP and TCP")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_jobs_egress_reaches_the_internet_but_never_an_internal_address(overlay: str) -> None:
    assert egress_problems(rendered(overlay)) == []


def test_a_hole_in_the_jobs_egress_is_caught() -> None:
    cluster = rendered("prod")
    (policy,) = egress_policies(cluster, "jobs")
    broken = copy.deepcopy(policy)
    broken["spec"]["egress"][0]["to"][0]["ipBlock"]["except"].remove("169.254.0.0/16")
    others = tuple(obj for obj in cluster.objects if obj is not policy)

    problems = egress_problems(Rendered("prod", (*others, broken)))
    assert "jobs may reach 169.254.169.254:80" in problems, problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_never_block_a_drain(overlay: str) -> None:
    cluster = rendered(overlay)
    for name, deployment in cluster.deployments().items():
        budgets = [
            b for b in cluster.all("PodDisruptionBudget") if matches(b["spec"]["selector"], pod_labels(deployment))
        ]
        assert [b["spec"] for b in budgets] == [{"maxUnavailable": 1, "selector": budgets[0]["spec"]["selector"]}], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_external_services_are_patched_and_secrets_point_at_them(overlay: str) -> None:
    cluster = rendered(overlay)
    for name in ("postgres", "redis"):
        service = cluster.named("Service", name)
        assert service is not None and service["spec"]["type"] == "ExternalName"
        assert not service["spec"]["externalName"].endswith(".invalid"), f"{overlay} must patch {name}"
    secret = cluster.named("Secret", secret_name(cluster))
    values = (
        {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
        if secret is not None
        else secret_templates()[SECRETS]["stringData"]
    )
    assert urlsplit(values["DATABASE_URL"]).hostname == "postgres"
    assert urlsplit(values["REDIS_URL"]).hostname == "redis"


def secret_name(cluster: Rendered) -> str:
    """The Secret whose keys the containers read (kustomize renames a generated one)."""
    names: set[str] = {
        reference["name"]
        for workload in cluster.workloads()
        for container in containers(workload)
        for reference in secret_references(container).values()
    }
    assert len(names) == 1, names
    return names.pop()


def secret_problems(cluster: Rendered) -> list[str]:
    """Each process gets exactly the keys of videogen-secrets its code reads (optional where it
    starts without them), the provider keys when it builds providers, and no other Secret."""
    problems = []
    for workload in cluster.workloads():
        for container in containers(workload):
            module, where = module_of(container), f"{workload['kind']}/{workload['metadata']['name']}"
            references = secret_references(container)
            got = {name: bool(reference.get("optional", False)) for name, reference in references.items()}
            wanted = secrets_read(module) if module else {}
            if got != wanted:
                problems.append(f"{where}: gets {got}, reads {wanted}")
            for name, reference in references.items():
                if reference["key"] != name or not reference["name"].startswith(SECRETS):
                    problems.append(f"{where}: {name} comes from {reference['name']}/{reference['key']}")
            loaded = [source["secretRef"] for source in container.get("envFrom", []) if "secretRef" in source]
            expected = [{"name": PROVIDER_KEYS, "optional": True}] if module and reads_provider_keys(module) else []
            if loaded != expected:
                problems.append(f"{where}: loads Secrets {loaded}, expected {expected}")
    return problems


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_process_gets_exactly_the_secrets_its_code_reads(overlay: str) -> None:
    assert secret_problems(rendered(overlay)) == []


def test_a_secret_given_to_a_process_that_never_reads_it_is_caught(tmp_path: Path) -> None:
    def give_the_worker_the_database(documents: list[Manifest]) -> None:
        container = documents[0]["spec"]["template"]["spec"]["containers"][0]
        reference = {"secretKeyRef": {"name": SECRETS, "key": "DATABASE_URL"}}
        container["env"].append({"name": "DATABASE_URL", "valueFrom": reference})

    problems = secret_problems(mutated(tmp_path, "worker.yaml", give_the_worker_the_database))
    assert any("Deployment/worker" in problem and "DATABASE_URL" in problem for problem in problems), problems


def test_dev_brings_its_secret_and_prod_expects_the_operators() -> None:
    assert {s["metadata"]["name"] for s in rendered("prod").all("Secret")} == set()
    assert secret_name(rendered("prod")) == "videogen-secrets"
    dev = rendered("dev").named("Secret", secret_name(rendered("dev")))
    assert dev is not None and secret_name(rendered("dev")).startswith("videogen-secrets-")
    values = {key: base64.b64decode(value).decode() for key, value in dev["data"].items()}
    # Obviously not production values, which production would refuse anyway (APP_ENV).
    for secret in (values["SECRET_KEY"], values["API_KEY"], urlsplit(values["DATABASE_URL"]).password):
        assert secret is not None and secret.startswith("dev-only"), secret


# --- Overlays --------------------------------------------------------------------------------


def test_overlays_set_environment_namespace_and_replicas() -> None:
    expected = {"dev": ("videogen-dev", "development", "DEBUG"), "prod": ("videogen", "production", "INFO")}
    for overlay, (namespace, app_env, log_level) in expected.items():
        cluster = rendered(overlay)
        env = environment(cluster, main_container(cluster.deployments()["jobs"]))
        assert (cluster.namespace, env["APP_ENV"], env["LOG_LEVEL"]) == (namespace, app_env, log_level)
        replicas = {name: d["spec"].get("replicas") for name, d in cluster.deployments().items() if name != "worker"}
        assert all(count == 1 if overlay == "dev" else count >= 2 for count in replicas.values()), replicas
    assert [n["metadata"]["name"] for n in rendered("dev").all("Namespace")] == ["videogen-dev"]
    envoy = rendered("prod").named("Service", "envoy")
    assert envoy is not None and envoy["spec"]["type"] == "LoadBalancer"


def quantity(value: str | int) -> float:
    """A Kubernetes quantity (`500m`, `2`, `3Gi`) as a number."""
    text = str(value)
    for suffix, factor in (("m", 1e-3), ("Ki", 2**10), ("Mi", 2**20), ("Gi", 2**30), ("Ti", 2**40)):
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)


def test_prod_workers_get_more_than_dev_workers() -> None:
    def resources(overlay: str) -> Manifest:
        found: Manifest = main_container(rendered(overlay).deployments()["worker"])["resources"]
        return found

    dev, prod = resources("dev"), resources("prod")
    for bound in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            assert quantity(prod[bound][resource]) > quantity(dev[bound][resource]), (bound, resource)


def test_the_worker_gets_the_most_of_every_resource() -> None:
    for overlay in OVERLAYS:
        deployments = rendered(overlay).deployments()
        for resource in ("cpu", "memory"):
            amounts = {
                name: quantity(main_container(d)["resources"]["requests"][resource]) for name, d in deployments.items()
            }
            assert max(amounts, key=lambda name: amounts[name]) == "worker", (overlay, resource)


# --- Autoscaling and monitoring --------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_worker_is_autoscaled_and_has_no_fixed_replica_count(overlay: str) -> None:
    cluster = rendered(overlay)
    scalers = cluster.all("ScaledObject") + cluster.all("HorizontalPodAutoscaler")
    assert [s["spec"]["scaleTargetRef"]["name"] for s in scalers] == ["worker"]
    assert "replicas" not in cluster.deployments()["worker"]["spec"]
    env = environment(cluster, main_container(cluster.deployments()["worker"]))
    redis = cluster.named("Service", "redis")
    assert redis is not None
    # KEDA resolves REDIS_HOST from its own namespace: a short name would miss.
    assert env["REDIS_HOST"] in {f"redis.{cluster.namespace}.svc.cluster.local", redis["spec"]["externalName"]}


def test_keda_watches_every_celery_queue_list() -> None:
    cluster = rendered("prod")
    (scaled,) = cluster.all("ScaledObject")
    worker = main_container(cluster.deployments()["worker"])
    env = environment(cluster, worker)
    settings = CoreSettings.model_construct(celery_key_prefix=env.get("CELERY_KEY_PREFIX") or "")
    triggers = [trigger["metadata"] for trigger in scaled["spec"]["triggers"]]
    assert [trigger["listName"] for trigger in triggers] == [queue_keys(settings, queue)[0] for queue in QUEUES]
    for trigger in triggers:
        assert {trigger["hostFromEnv"], trigger["portFromEnv"]} <= env.keys()
    assert scaled["spec"]["minReplicaCount"] >= 1


def test_hpa_scales_on_cpu_and_the_queue_depth_the_worker_exports() -> None:
    (hpa,) = rendered("dev").all("HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] >= 1
    metrics = {m["type"]: m for m in hpa["spec"]["metrics"]}
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    name = metrics["External"]["external"]["metric"]["name"]
    assert any(f'"{name}"' in source.read_text() for source in sources("services.worker"))


def test_prometheus_operator_monitors_every_process_on_its_metrics_port() -> None:
    cluster = rendered("prod")
    assert monitor_problems(cluster) == []
    assert {m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for m in monitors(cluster)} == set(
        BY_NAME
    )


def test_prod_applies_the_alert_rules_of_deploy_prometheus() -> None:
    rules = yaml.safe_load(RULES_FILE.read_text())["groups"]
    applied = rendered("prod").all("PrometheusRule")

    assert [rule["spec"]["groups"] for rule in applied] == [rules]
    fresh = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "render_prometheus_rule.py"), "--stdout"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert PROMETHEUS_RULE.read_text() == fresh, "a stale copy: run `make k8s-rules`"


def test_a_monitor_on_a_missing_port_is_caught() -> None:
    cluster = rendered("prod")
    broken = copy.deepcopy(cluster.all("ServiceMonitor")[0])
    broken["spec"]["endpoints"][0]["port"] = "grpc-metrics"
    assert monitor_problems(Rendered("prod", (*cluster.objects, broken))) != []


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_annotations_name_the_metrics_port_and_path(overlay: str) -> None:
    for name, deployment in rendered(overlay).deployments().items():
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        process = BY_NAME[name]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(process.default_metrics_port),
            "prometheus.io/path": process.metrics_path,
        }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_carries_the_common_labels(overlay: str) -> None:
    for obj in rendered(overlay).objects:
        labels = obj["metadata"].get("labels", {})
        if obj["kind"] == "Namespace":
            continue
        assert labels.get("app.kubernetes.io/name") == "videogen", obj["metadata"]["name"]
        assert labels.get("app.kubernetes.io/part-of") == "videogen", obj["metadata"]["name"]
    for name, deployment in rendered(overlay).deployments().items():
        assert pod_labels(deployment)["app.kubernetes.io/component"] == name


# --- The checks can fail ---------------------------------------------------------------------


def mutated(tmp_path: Path, file: str, change: Any) -> Rendered:
    """The dev overlay of a copy of k8s/ whose base file has had change(documents) applied."""
    tree = tmp_path / "k8s"
    shutil.copytree(K8S, tree)
    path = tree / "base" / file
    documents = list(yaml.safe_load_all(path.read_text()))
    change(documents)
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return render(tree / "overlays" / "dev")


def test_a_probe_on_a_wrong_port_is_caught(tmp_path: Path) -> None:
    def break_probe(documents: list[Manifest]) -> None:
        documents[0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"]["port"] = 50059

    assert probe_port_problems(rendered("dev")) == []
    assert probe_port_problems(mutated(tmp_path, "jobs.yaml", break_probe)) != []


def test_an_unknown_field_is_caught_by_kubernetes_validate(tmp_path: Path) -> None:
    def misspell(documents: list[Manifest]) -> None:
        context = documents[0]["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        context["readOnlyRootFileSystem"] = context.pop("readOnlyRootFilesystem")

    problems = validation_problems(mutated(tmp_path, "jobs.yaml", misspell))
    assert any("readOnlyRootFileSystem" in problem for problem in problems), problems


def test_an_unknown_trigger_field_is_caught_by_the_crd_schema() -> None:
    scaled = copy.deepcopy(rendered("prod").all("ScaledObject")[0])
    scaled["spec"]["triggers"][0]["metadata"]["listLenght"] = "2"
    problems = validation_problems(Rendered("prod", (scaled,)))
    assert any("listLenght" in problem for problem in problems), problems
