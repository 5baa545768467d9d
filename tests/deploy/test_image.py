"""The container image recipe, checked without a Docker engine.

hadolint lints deploy/Dockerfile; the stages and the files they copy are checked against the
repository and .dockerignore; and every module of services/ is imported with only the image's
dependencies (requirements.txt) importable, which is what the image will hold.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from tests.support.deployment import LISTEN_EVERYWHERE, SETTINGS

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SERVICE_COMMANDS = ("services.jobs", "services.providers", "services.worker", "services.gateway")


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    binary = Path(sys.executable).parent / "hadolint"
    return subprocess.run([str(binary), str(path)], capture_output=True, text=True, timeout=60)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, with continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    parsed = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            parsed.append((keyword.upper(), rest.strip()))
    return parsed


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """The instructions of each named stage."""
    found: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, rest in instructions(text):
        if keyword == "FROM":
            name = rest.split(" AS ")[-1].strip() if " AS " in rest else f"stage{len(found)}"
            current = found.setdefault(name, [])
        elif current is not None:
            current.append((keyword, rest))
    return found


def ignored(path: str) -> bool:
    """Whether .dockerignore keeps path out of the build context (last matching rule wins)."""
    verdict = False
    for rule in DOCKERIGNORE.read_text().splitlines():
        rule = rule.strip()
        if not rule or rule.startswith("#"):
            continue
        negate = rule.startswith("!")
        pattern = rule.removeprefix("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            verdict = not negate
    return verdict


def test_hadolint_passes() -> None:
    result = hadolint(DOCKERFILE)

    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_root_user(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text() + "USER root\n")

    assert hadolint(broken).returncode != 0


def test_the_image_is_multi_stage_non_root_and_builds_the_generated_code() -> None:
    built = stages(DOCKERFILE.read_text())
    runtime = built["runtime"]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    copied_from_build = [rest for keyword, rest in runtime if keyword == "COPY" and rest.startswith("--from=build")]
    runs_in_build = " ".join(rest for keyword, rest in built["build"] if keyword == "RUN")

    assert list(built) == ["build", "runtime"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "scripts/protogen.py gen" in runs_in_build
    assert any("/src/gen" in rest for rest in copied_from_build)
    # The dev tools never reach the runtime stage.
    assert not any("requirements-dev" in rest for _, rest in runtime)
    assert "/opt/protogen" not in " ".join(copied_from_build)


def test_the_image_listens_on_every_interface_where_the_settings_default_to_loopback() -> None:
    runtime = stages(DOCKERFILE.read_text())["runtime"]
    env = dict(pair.partition("=")[::2] for keyword, rest in runtime if keyword == "ENV" for pair in rest.split())

    assert LISTEN_EVERYWHERE.items() <= env.items()
    for variable in LISTEN_EVERYWHERE:
        readers = [settings for settings in SETTINGS.values() if variable.lower() in settings.model_fields]
        assert readers, variable
        assert {settings.model_fields[variable.lower()].default for settings in readers} == {"127.0.0.1"}, variable


def test_every_file_the_build_copies_is_in_the_repository_and_the_build_context() -> None:
    sources = []
    for keyword, rest in instructions(DOCKERFILE.read_text()):
        if keyword == "COPY" and not rest.startswith("--from"):
            sources.extend(rest.split()[:-1])

    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source.rstrip("/")), f"{source} is excluded by .dockerignore"
    for local in (".venv", ".data", ".git", "gen", "tests", ".env"):
        assert ignored(local), f"{local} would be sent to the Docker daemon"


def runtime_distributions(requirements: list[str]) -> set[str]:
    """The distributions that pip installs for these requirement lines, extras included."""
    wanted = [Requirement(line) for line in requirements]
    found: set[str] = set()
    while wanted:
        requirement = wanted.pop()
        name = requirement.name.lower().replace("_", "-")
        extras = set(requirement.extras)
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in found:
            continue
        found.add(key)
        for line in metadata.requires(name) or []:
            dependency = Requirement(line)
            environment = {"extra": ",".join(extras) or ""}
            if dependency.marker is None or any(
                dependency.marker.evaluate({**environment, "extra": extra}) for extra in (extras or {""})
            ):
                wanted.append(dependency)
    return {key.split("[")[0] for key in found}


def image_requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.startswith(("#", "-"))]


def import_with_only(distributions: set[str]) -> subprocess.CompletedProcess[str]:
    """Imports every module of services/ in a fresh interpreter where only these distributions
    (and the standard library, and the project itself) can be imported. Another is missing as
    in the image: ModuleNotFoundError, which a library's optional import (anyio's of sniffio)
    catches."""
    script = textwrap.dedent(
        """
        import importlib, importlib.abc, importlib.metadata, pkgutil, sys
        allowed = set(sys.argv[1].split(","))
        owners = importlib.metadata.packages_distributions()

        class OnlyTheImage(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                top = name.partition(".")[0]
                dists = {d.lower().replace("_", "-") for d in owners.get(top, [])}
                if dists and not dists & allowed:
                    raise ModuleNotFoundError(f"{name} ({', '.join(sorted(dists))}) is not in the image")
                return None

        sys.meta_path.insert(0, OnlyTheImage())
        import services
        for module in pkgutil.walk_packages(services.__path__, "services."):
            if ".migrations." not in module.name:
                importlib.import_module(module.name)
        print("imported")
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script, ",".join(sorted(distributions))],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_every_service_module_imports_with_the_image_dependencies_alone() -> None:
    result = import_with_only(runtime_distributions(image_requirements()))

    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "imported"


def test_a_dependency_missing_from_the_image_is_caught() -> None:
    requirements = [line for line in image_requirements() if not line.startswith("structlog")]

    result = import_with_only(runtime_distributions(requirements))

    assert result.returncode != 0
    assert "structlog" in result.stderr


def test_each_service_command_names_a_runnable_module() -> None:
    for module in (*SERVICE_COMMANDS, "services.core.migrate", "services.probe"):
        path = ROOT.joinpath(*module.split("."))
        entry = path / "__main__.py" if path.is_dir() else path.with_suffix(".py")
        assert entry.exists(), module
        assert "__main__" in entry.read_text(), module
