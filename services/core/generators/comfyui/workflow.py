"""A ComfyUI workflow file (API format) with our placeholders: read and checked once, filled per job.

A placeholder is a string value of a node's input:

- `"{{prompt}}"` becomes the job's prompt; it may also sit inside a longer text
  (`"{{prompt}}, cinematic lighting"`), and so may `{{image}}`.
- `"{{seed}}"`, `"{{width}}"`, `"{{height}}"`, `"{{frames}}"` and `"{{fps}}"` become whole numbers
  and must be the whole value. `"{{width:1280}}"` says what to use when the job does not say
  (width, height and fps take a default).
- `"{{image}}"` becomes the name of the job's input image, uploaded to the server first
  (a LoadImage node's `image`): a workflow with it makes video from an image.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.core.generators.registry import RegistryError

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*(?::\s*([^{}]*?)\s*)?\}\}")
TEXTS = frozenset({"prompt", "image"})
NUMBERS = frozenset({"seed", "width", "height", "frames", "fps"})
# What the job's size and rate are when it says nothing and the workflow gives no default.
DEFAULTS = {"width": 832, "height": 480, "fps": 16}
Value = str | int


class WorkflowError(RegistryError):
    """The workflow file is missing or wrong; the message names the file and the place."""


@dataclass(frozen=True)
class Workflow:
    """A checked workflow: its graph, the placeholders it uses and their defaults."""

    path: Path
    graph: Mapping[str, Any]
    placeholders: frozenset[str]
    defaults: Mapping[str, int]
    # The nodes that sample (the long part of a run), in the file's order: progress is split among them.
    samplers: tuple[str, ...]

    def class_of(self, node: str) -> str:
        """The class_type of node ("" when it is not in the graph)."""
        value = self.graph.get(node)
        return str(value.get("class_type", "")) if isinstance(value, dict) else ""

    def default(self, name: str) -> int:
        """The value of a placeholder when the job does not say."""
        return self.defaults.get(name, DEFAULTS[name])

    def fill(self, values: Mapping[str, Value]) -> dict[str, Any]:
        """The graph with every placeholder replaced (a copy; the prompt is never parsed again)."""
        graph = copy.deepcopy(dict(self.graph))
        for node in graph.values():
            node["inputs"] = _filled(node["inputs"], values)
        return graph


def load_workflow(path: Path) -> Workflow:
    """Reads and checks the workflow file; WorkflowError naming the file and what is wrong."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise WorkflowError(f"workflow {path}: cannot read it ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise WorkflowError(f"workflow {path}: not JSON ({exc})") from None
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise WorkflowError(
            f"workflow {path}: this is ComfyUI's UI format; export the workflow in API format (Workflow > Export (API))"
        )
    if not isinstance(data, dict) or not data:
        raise WorkflowError(f"workflow {path}: not an API-format graph (an object of nodes by id)")
    try:
        return _checked(path, data)
    except ValueError as exc:
        raise WorkflowError(f"workflow {path}: {exc}") from None


def _checked(path: Path, graph: dict[str, Any]) -> Workflow:
    found: dict[str, list[str]] = {}
    for node_id, node in graph.items():
        if not (isinstance(node, dict) and isinstance(node.get("class_type"), str) and node["class_type"]):
            raise ValueError(f"node {node_id} has no class_type")
        if not isinstance(node.get("inputs"), dict):
            raise ValueError(f"node {node_id} ({node['class_type']}) has no inputs object")
        for name, value in node["inputs"].items():
            where = f"node {node_id} ({node['class_type']}) input {name!r}"
            _check_link(graph, value, where)
            for key, default in _placeholders(value, where):
                found.setdefault(key, []).append(default)
    if "prompt" not in found:
        raise ValueError("no input is {{prompt}}, so the job's prompt would be ignored")
    defaults: dict[str, int] = {}
    for key, given in found.items():
        values = {d for d in given if d}
        if len(values) > 1:
            raise ValueError(f"{{{{{key}}}}} has different defaults: {', '.join(sorted(values))}")
        if values:
            defaults[key] = _default(key, values.pop())
    samplers = tuple(n for n, node in graph.items() if "sampler" in node["class_type"].lower())
    return Workflow(path=path, graph=graph, placeholders=frozenset(found), defaults=defaults, samplers=samplers)


def _check_link(graph: Mapping[str, Any], value: Any, where: str) -> None:
    """A link is [node id, output index]: the node must be in the graph."""
    link = isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and type(value[1]) is int
    if link and value[0] not in graph:
        raise ValueError(f"{where} links to node {value[0]}, which is not in the workflow")


def _placeholders(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """The (name, default) of every placeholder in an input's value, checked."""
    if isinstance(value, list):
        for item in value:
            yield from _placeholders(item, where)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _placeholders(item, where)
    elif isinstance(value, str):
        for match in PLACEHOLDER.finditer(value):
            name, default = match[1], match[2] or ""
            if name not in TEXTS | NUMBERS:
                known = ", ".join(f"{{{{{n}}}}}" for n in sorted(TEXTS | NUMBERS))
                raise ValueError(f"{where}: unknown placeholder {match[0]} (known: {known})")
            if name in NUMBERS and match[0] != value:
                raise ValueError(f"{where}: {match[0]} is a number and must be the whole value")
            if default and name not in DEFAULTS:
                raise ValueError(f"{where}: {{{{{name}}}}} takes no default")
            yield name, default
        if "{{" in PLACEHOLDER.sub("", value):
            raise ValueError(f"{where}: {value[:60]!r} holds a malformed placeholder")


def _default(name: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 16384:
        raise ValueError(f"the default of {{{{{name}}}}} must be a whole number from 1 to 16384, not {text!r}")
    return int(text)


def _filled(value: Any, values: Mapping[str, Value]) -> Any:
    if isinstance(value, str):
        whole = PLACEHOLDER.fullmatch(value)
        if whole:
            return values[whole[1]]
        return PLACEHOLDER.sub(lambda match: str(values[match[1]]), value)
    if isinstance(value, list):
        return [_filled(item, values) for item in value]
    if isinstance(value, dict):
        return {key: _filled(item, values) for key, item in value.items()}
    return value
