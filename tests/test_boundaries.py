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


def module_name(path: Path, root: Path = SERVICES) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path, modules: set[str]) -> set[str]:
    """The modules of `modules` that path imports when it is imported: statements outside
    functions and outside `if TYPE_CHECKING:` blocks. `from package import module` imports the
    module (its package is imported first, as for any submodule, which is no dependency)."""
    names: set[str] = set()
    pending: list[ast.AST] = [ast.parse(path.read_text(), filename=str(path))]
    while pending:
        node = pending.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                pending.extend(child.orelse)
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                submodules = {f"{child.module}.{alias.name}" for alias in child.names} & modules
                names.update(submodules)
                if len(submodules) < len(child.names):
                    names.add(child.module)
            pending.append(child)
    return names & modules


def import_cycles(root: Path = SERVICES) -> list[list[str]]:
    """Every group of modules under root that import each other, directly or around a loop."""
    modules = {module_name(path, root): path for path in root.rglob("*.py")}
    graph = {name: sorted(top_level_imports(path, set(modules)) - {name}) for name, path in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(name: str) -> None:  # Tarjan's strongly connected components
        index[name] = low[name] = len(index)
        stack.append(name)
        for target in graph[name]:
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            group = []
            while (member := stack.pop()) != name:
                group.append(member)
            if group:
                cycles.append(sorted([name, *group]))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return cycles


def test_no_import_cycle() -> None:
    assert import_cycles() == []


def test_the_cycle_check_sees_a_loop_but_not_a_function_import(tmp_path: Path) -> None:
    core = tmp_path / "services" / "core"
    core.mkdir(parents=True)
    (core / "__init__.py").write_text("")
    (core / "a.py").write_text("from services.core.b import f\n")
    (core / "b.py").write_text("import services.core.c\ndef f(): pass\n")
    (core / "c.py").write_text("from services.core import a\n")
    (core / "d.py").write_text("def g():\n    from services.core.e import h\n")
    (core / "e.py").write_text("from services.core.d import g\n")
    assert import_cycles(tmp_path / "services") == [["services.core.a", "services.core.b", "services.core.c"]]


# Imports inside functions, each for a reason other than a cycle.
LAZY_IMPORTS = {
    # boto3 takes a second to import, and only MEDIA_BACKEND=s3 needs it.
    ("services.core.storage", "services.core.storage.s3"),
}


def function_imports(root: Path = SERVICES) -> set[tuple[str, str]]:
    """(module, imported module under services) for every import made inside a function."""
    found = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and inner.module and inner.module.startswith("services."):
                    found.add((module_name(path, root), inner.module))
                elif isinstance(inner, ast.Import):
                    names = [alias.name for alias in inner.names if alias.name.startswith("services.")]
                    found.update((module_name(path, root), name) for name in names)
    return found


def test_no_import_hides_in_a_function_but_the_known_lazy_ones() -> None:
    assert function_imports() == LAZY_IMPORTS
