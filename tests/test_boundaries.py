"""No service imports another: each of services/<name>/ may import the shared core
(services.core), generated code and itself, never a sibling service."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ROOT / "services"
SHARED = {"core"}


def service_packages(root: Path = SERVICES) -> list[str]:
    return sorted(p.name for p in root.iterdir() if (p / "__init__.py").exists() and p.name not in SHARED)


def imported_modules(path: Path) -> set[str]:
    """Every module path imports, wherever the import statement stands (functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def crossings(root: Path = SERVICES) -> list[str]:
    """'<file>: <module>' for each import of one service's package by another service or by the core."""
    packages = service_packages(root)
    found = []
    for package in [*packages, *SHARED]:
        for path in sorted((root / package).rglob("*.py")):
            for module in sorted(imported_modules(path)):
                parts = module.split(".")
                if len(parts) > 1 and parts[0] == "services" and parts[1] in packages and parts[1] != package:
                    found.append(f"{package}/{path.relative_to(root / package)}: {module}")
    return found


def test_no_service_imports_another() -> None:
    assert service_packages() == ["gateway", "jobs", "providers", "worker"]
    assert crossings() == []


def test_the_check_sees_a_crossing_even_inside_a_function(tmp_path: Path) -> None:
    for package in ("core", "jobs", "worker"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "worker" / "ok.py").write_text("from services.core.job import rules\nfrom services.worker import x\n")
    (tmp_path / "worker" / "bad.py").write_text("def f():\n    from services.jobs.domain import NewJob\n")
    (tmp_path / "core" / "bad.py").write_text("import services.worker.runner\n")
    assert crossings(tmp_path) == [
        "worker/bad.py: services.jobs.domain",
        "worker/bad.py: services.jobs.domain.NewJob",
        "core/bad.py: services.worker.runner",
    ]
