"""The comfyui kind's workflow files: the shipped examples load, placeholders fill with typed
values, and a bad file or entry is refused when the provider is built, naming what is wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.core.generators.comfyui import ComfyUI
from services.core.generators.comfyui.workflow import WorkflowError, load_workflow
from services.core.generators.registry import ProviderConfig, RegistryError
from services.core.job.options import JobOptions
from tests.support.processes import ROOT, clean_env

EXAMPLES = ROOT / "deploy" / "comfyui"
PROMPT_ONLY = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}"}}}


def write(tmp_path: Path, graph: Any, name: str = "workflow.json") -> Path:
    path = tmp_path / name
    path.write_text(graph if isinstance(graph, str) else json.dumps(graph))
    return path


def test_the_example_workflows_load_with_every_placeholder() -> None:
    text = load_workflow(EXAMPLES / "wan22_ti2v_5b_t2v.json")
    image = load_workflow(EXAMPLES / "wan22_ti2v_5b_i2v.json")

    assert text.placeholders == {"prompt", "seed", "width", "height", "frames", "fps"}
    assert image.placeholders == text.placeholders | {"image"}
    assert dict(text.defaults) == {"width": 1280, "height": 704, "fps": 24}
    assert (text.samplers, text.class_of("58")) == (("3",), "SaveVideo")


def test_the_example_registry_entry_builds_with_its_workflow(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = yaml.safe_load((ROOT / "deploy" / "providers.example.yaml").read_text())["providers"]
    [entry] = [e for e in entries if e["kind"] == "comfyui"]
    monkeypatch.chdir(ROOT)

    provider = ComfyUI(ProviderConfig.model_validate({**entry, "enabled": True}))

    assert entry["enabled"] is False
    assert provider.spec("p", JobOptions.parse({"durationSeconds": 5})).model == entry["models"][0]


def test_filling_puts_numbers_as_numbers_and_never_reads_the_prompt_as_a_template(tmp_path: Path) -> None:
    graph = {
        "1": {"class_type": "CLIPTextEncode", "inputs": {"text": "{{prompt}}, 35mm film", "clip": ["2", 0]}},
        "2": {"class_type": "EmptyLatent", "inputs": {"width": "{{ width }}", "length": "{{frames}}"}},
    }
    workflow = load_workflow(write(tmp_path, graph))

    filled = workflow.fill({"prompt": "a {{width}} fox", "width": 832, "frames": 81})

    assert filled["1"]["inputs"] == {"text": "a {{width}} fox, 35mm film", "clip": ["2", 0]}
    assert filled["2"]["inputs"] == {"width": 832, "length": 81}
    assert workflow.graph["2"]["inputs"]["width"] == "{{ width }}"


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("{not json", "not JSON"),
        ({"nodes": [], "links": []}, r"UI format; export the workflow in API format"),
        ([1, 2], "not an API-format graph"),
        ({"1": {"inputs": {"text": "{{prompt}}"}}}, "node 1 has no class_type"),
        ({"1": {"class_type": "KSampler"}}, r"node 1 \(KSampler\) has no inputs"),
        ({**PROMPT_ONLY, "2": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0]}}},
         r"node 2 \(VAEDecode\) input 'samples' links to node 9, which is not in the workflow"),
        ({**PROMPT_ONLY, "2": {"class_type": "E", "inputs": {"width": "{{witdh}}"}}},
         r"input 'width': unknown placeholder \{\{witdh\}\}"),
        ({**PROMPT_ONLY, "2": {"class_type": "E", "inputs": {"width": "{{width}}px"}}},
         r"\{\{width\}\} is a number and must be the whole value"),
        ({**PROMPT_ONLY, "2": {"class_type": "E", "inputs": {"a": "{{fps:24}}", "b": "{{fps:16}}"}}},
         r"\{\{fps\}\} has different defaults: 16, 24"),
        ({**PROMPT_ONLY, "2": {"class_type": "E", "inputs": {"w": "{{width:wide}}"}}}, "must be a whole number"),
        ({**PROMPT_ONLY, "2": {"class_type": "E", "inputs": {"s": "{{seed:5}}"}}}, r"\{\{seed\}\} takes no default"),
        ({**PROMPT_ONLY, "2": {"class_type": "E", "inputs": {"t": "{{prompt"}}}, "malformed placeholder"),
        ({"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox"}}}, r"no input is \{\{prompt\}\}"),
    ],
)  # fmt: skip
def test_a_bad_workflow_is_refused_naming_the_file_and_the_place(tmp_path: Path, content: Any, named: str) -> None:
    path = write(tmp_path, content)

    with pytest.raises(WorkflowError, match=named) as caught:
        load_workflow(path)

    assert str(path) in str(caught.value)
    assert isinstance(caught.value, RegistryError)


def entry(tmp_path: Path, **fields: Any) -> ProviderConfig:
    values: dict[str, Any] = {
        "name": "comfy",
        "kind": "comfyui",
        "base_url": "http://127.0.0.1:8188",
        "workflow": str(write(tmp_path, PROMPT_ONLY)),
        "models": ["m"],
        "capabilities": {"m": {}},
        **fields,
    }
    return ProviderConfig.model_validate({k: v for k, v in values.items() if v is not None})


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"workflow": None}, "provider comfy: workflow .* is required"),
        ({"workflow": "/nonexistent/wan.json"}, "provider comfy: workflow /nonexistent/wan.json: cannot read it"),
        ({"models": None}, r"name the workflow's model \(models: \[one-name\]\)"),
        ({"models": ["m", "n"], "capabilities": {"m": {}, "n": {}}}, "one workflow makes one model's videos"),
        ({"capabilities": {"m": {"text_to_video": False, "image_to_video": True}}}, "has no {{image}} input"),
    ],
)
def test_an_entry_that_cannot_work_is_refused_when_the_provider_is_built(
    tmp_path: Path, fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(WorkflowError, match=named):
        ComfyUI(entry(tmp_path, **fields))


def test_an_image_workflow_must_be_declared_image_to_video(tmp_path: Path) -> None:
    graph = {**PROMPT_ONLY, "2": {"class_type": "LoadImage", "inputs": {"image": "{{image}}"}}}
    path = write(tmp_path, graph, "i2v.json")

    with pytest.raises(WorkflowError, match=r"i2v.json takes \{\{image\}\}, so its capabilities must say"):
        ComfyUI(entry(tmp_path, workflow=str(path)))
    ComfyUI(entry(tmp_path, workflow=str(path), capabilities={"m": {"text_to_video": False, "image_to_video": True}}))


def test_the_providers_service_refuses_to_start_on_a_bad_workflow(tmp_path: Path) -> None:
    write(tmp_path, {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "no placeholder"}}}, "wan.json")
    registry = {"providers": [{"name": "comfy", "kind": "comfyui", "base_url": "http://127.0.0.1:8188",
                               "workflow": "wan.json", "models": ["m"], "capabilities": {"m": {}}}]}  # fmt: skip
    (tmp_path / "providers.json").write_text(json.dumps(registry))

    result = subprocess.run(
        [sys.executable, "-m", "services.providers"],
        cwd=tmp_path,
        env=clean_env(PROVIDERS_CONFIG="providers.json", DATABASE_URL="postgresql://postgres@127.0.0.1:1/none"),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "configuration error: provider comfy: workflow wan.json: no input is {{prompt}}" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_workflow_shown_in_the_docs_is_the_shipped_one() -> None:
    section = (ROOT / "docs" / "providers.md").read_text().split("### comfyui", 1)[1].split("\n### ", 1)[0]
    shown = section.split("```json\n", 1)[1].split("```", 1)[0]

    assert json.loads(shown) == json.loads((EXAMPLES / "wan22_ti2v_5b_t2v.json").read_text())
