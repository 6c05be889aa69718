"""The benchmarks' CPU accounting (benchmarks/_cpu.py) counts each part's time where it was spent.

The companion benchmark's verdict on whether a target is within reach rests on these
figures, so they are checked against work of known cost: a child process and this
process each burn CPU for a known time, and each must be counted in its own part,
not in the other.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from _cpu import measure, processes_named, usable_cores  # the benchmarks' helper, on the path just above

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

BURN_S = 0.3
_BURN_SOURCE = f"end = time.process_time() + {BURN_S}\nwhile time.process_time() < end: pass"


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_child_process_counts_as_the_service_and_this_process_as_the_client() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time\nsys.stdin.read(1)\n{_BURN_SOURCE}"],
        stdin=subprocess.PIPE,
    )
    try:
        assert child.stdin is not None

        def run() -> None:
            assert child.stdin is not None
            child.stdin.write(b"x")
            child.stdin.close()
            # Alive until measured after the run: its time must still be in /proc.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
                if fields[0] == "Z" or (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK") >= BURN_S:
                    return
                time.sleep(0.01)

        use = measure(run, service_pids=lambda: [child.pid])
    finally:
        child.wait(30)
    assert use.service is not None and use.client is not None
    assert BURN_S * 0.8 <= use.service <= use.seconds + 0.05
    assert use.client < BURN_S / 2  # this process mostly slept
    assert use.database == 0.0  # no database pids given


def test_work_in_this_process_counts_as_the_client() -> None:
    use = measure(lambda: _burn(BURN_S))
    assert use.client is not None
    assert BURN_S * 0.95 <= use.client <= use.seconds + 0.05
    assert use.service == 0.0
    assert use.busy_cores is not None and 0.5 <= use.busy_cores <= (os.cpu_count() or 1) + 0.05
    client, service, database, total = use.per_event(1000)
    assert client is not None and total is not None
    assert service == database == 0.0
    assert total == pytest.approx(client)
    assert client == pytest.approx(use.client / 1000 * 1e6)


def test_processes_are_found_by_command_name() -> None:
    name = Path("/proc/self/comm").read_text().strip()
    assert os.getpid() in processes_named(name)
    assert processes_named("no-such-command-here") == []
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
