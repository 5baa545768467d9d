"""CPU read from /proc over a window of load (bench/procs.py's CpuWindow), with real processes."""

from __future__ import annotations

import subprocess
import sys
import time

from bench.procs import CpuWindow, cpu_seconds

# Burns this much CPU, then waits on stdin, so the test reads its CPU while it is alive.
BURN = 0.3
# /proc counts CPU in sampled clock ticks, which can stay a tick or two behind the exact
# process_time the burner stops at: it burns this much more, so /proc reaches BURN.
TICK_MARGIN = 0.05
BURNER = (
    f"import sys, time\nend = time.process_time() + {BURN + TICK_MARGIN}\n"
    "while time.process_time() < end: pass\nsys.stdin.read()"
)


def test_a_process_started_during_the_window_counts_all_its_cpu() -> None:
    watched: dict[int, str] = {}
    window = CpuWindow(lambda: dict(watched))
    burner = subprocess.Popen([sys.executable, "-c", BURNER], stdin=subprocess.PIPE)
    try:
        watched[burner.pid] = "burner"
        deadline = time.monotonic() + 30
        while cpu_seconds(burner.pid) < BURN and time.monotonic() < deadline:
            time.sleep(0.05)
        used = window.seconds()
    finally:
        assert burner.stdin is not None
        burner.stdin.close()
        burner.wait()

    assert used["burner"] >= BURN


def test_a_process_gone_during_the_window_counts_nothing_not_less() -> None:
    burner = subprocess.Popen([sys.executable, "-c", BURNER], stdin=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while cpu_seconds(burner.pid) < BURN and time.monotonic() < deadline:
        time.sleep(0.05)
    window = CpuWindow(lambda: {burner.pid: "burner"})
    assert burner.stdin is not None
    burner.stdin.close()
    burner.wait()

    assert window.seconds() == {"burner": 0.0}
