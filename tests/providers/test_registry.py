"""The registry file: the example loads, mistakes are refused naming the place, defaults hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.core.generators.registry import DEFAULT_REGISTRY, RegistryError, load_registry
from tests.support.processes import ROOT, clean_env


def test_without_a_file_only_local_is_configured() -> None:
    assert [p.name for p in load_registry(None).providers] == ["local"]
    assert DEFAULT_REGISTRY.providers[0].kind == "local"


EXAMPLE = ROOT / "deploy" / "providers.example.yaml"


def test_every_entry_of_the_example_registry_is_valid_and_waits_for_its_key() -> None:
    entries = yaml.safe_load(EXAMPLE.read_text())["providers"]
    keys = {entry["api_key_env"]: "a-key" for entry in entries if "api_key_env" in entry}

    everything = load_registry(EXAMPLE, environ=keys)
    keyless = load_registry(EXAMPLE, environ={})

    enabled = [entry["name"] for entry in entries if entry.get("enabled", True)]
    assert [p.name for p in everything.providers] == enabled
    assert [p.name for p in keyless.providers] == [e["name"] for e in entries if "api_key_env" not in e
                                                   and e.get("enabled", True)]  # fmt: skip
    assert {p.kind for p in everything.providers} >= {"local", "openai-compatible"}


def test_json_works_too(tmp_path: Path) -> None:
    path = tmp_path / "providers.json"
    path.write_text('{"providers": [{"name": "local", "kind": "local"}]}')

    assert load_registry(path).providers[0].name == "local"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("providers: []", "providers"),
        ("providers:\n  - {name: Bad Name, kind: local}", "providers.0.name"),
        ("providers:\n  - {name: x, kind: teleport}", "providers.0.kind"),
        ("providers:\n  - {name: x, kind: openai-videos}", "base_url"),
        ("providers:\n  - {name: x, kind: local, dialect: vllm-omni}", "dialect is for kind openai-compatible"),
        ("providers:\n  - {name: x, kind: openai-compatible, base_url: 'http://h/v1', dialect: grpc}", "dialect"),
        (
            "providers:\n  - {name: x, kind: openai-compatible, base_url: 'http://h/v1', dialect: together}",
            "dialect together needs models",
        ),
        ("providers:\n  - {name: x, kind: local}\n  - {name: x, kind: local}", "unique"),
        ("providers:\n  - {name: x, kind: local, api_key: sk-inline}", "api_key"),
        ("providers: [", "cannot read"),
    ],
)
def test_a_bad_registry_is_refused_naming_the_place(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text(text)

    with pytest.raises(RegistryError, match=named):
        load_registry(path)


def test_the_providers_service_refuses_to_start_on_a_bad_registry(tmp_path: Path) -> None:
    path = tmp_path / "providers.yaml"
    path.write_text("providers: []")

    result = subprocess.run(
        [sys.executable, "-m", "services.providers"],
        cwd=tmp_path,
        env=clean_env(PROVIDERS_CONFIG=str(path), DATABASE_URL="postgresql://postgres@127.0.0.1:1/none"),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "configuration error: PROVIDERS_CONFIG" in result.stderr
    assert "Traceback" not in result.stderr
