"""Runs a service as its own process and reads its JSON log lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment of a service under test: nothing of the caller's settings, plus overrides."""
    env = {key: os.environ[key] for key in _INHERITED if key in os.environ}
    env.update(overrides)
    return env


class ServiceProcess:
    """A service process whose stdout is collected line by line."""

    def __init__(self, module: str, env: dict[str, str], cwd: Path) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        self.process = subprocess.Popen(
            [sys.executable, "-m", module],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def records(self) -> list[dict[str, Any]]:
        """Every JSON log line printed so far."""
        found = []
        for line in list(self.lines):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                found.append(record)
        return found

    def events_with(self, **fields: Any) -> list[dict[str, Any]]:
        """Every JSON log line so far carrying these field values, whatever its event."""
        return [r for r in self.records() if all(r.get(key) == value for key, value in fields.items())]

    def events(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        """Every JSON log line so far with this event and these field values."""
        return self.events_with(event=event, **fields)

    def wait_event(self, event: str, timeout: float = 60, **fields: Any) -> dict[str, Any]:
        """Waits for a JSON log line (printed at any time) with this event and these fields."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = self.events(event, **fields)
                if found:
                    return found[0]
                if self._ended:
                    raise AssertionError(f"process ended before {event!r}:\n{self.output()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {event!r} {fields} within {timeout}s:\n{self.output()[-5000:]}")
                self._changed.wait(left)

    def output(self) -> str:
        """Everything the process printed so far."""
        return "".join(self.lines)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit code (SIGKILL past timeout)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def free_port() -> int:
    """A TCP port that nothing listens on right now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def free_ports_env() -> dict[str, str]:
    """Every port variable of the system (services/topology.py) set to a free port."""
    from services.topology import PORT_SETTINGS

    return {setting.upper(): str(free_port()) for setting in PORT_SETTINGS}
