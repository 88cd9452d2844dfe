"""CPU and memory of every process supervisord runs, read from /proc (no sampling overhead in between).

CPU is utime+stime of the whole process (all threads) in clock ticks; a run's cost is the difference
between a snapshot before and one after it. RSS is VmRSS. PostgreSQL (`make run BACKEND=postgres`) is a
process per connection forked by its postmaster, so its CPU is the whole tree's (`tree_cpu_seconds`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUPERVISOR_CONF = REPO / "build" / "mesh" / "supervisord.conf"
TICKS = os.sysconf("SC_CLK_TCK")
# Programs whose work is done by their child processes: PostgreSQL's backends, one per pooled connection,
# plus its checkpointer, WAL writer and autovacuum workers.
PROCESS_TREES = frozenset({"postgres"})


def supervisor_status(conf: Path = SUPERVISOR_CONF) -> dict[str, str]:
    """Program name (without the group) → its state (RUNNING, STARTING, BACKOFF, ...)."""
    ctl = Path(sys.executable).parent / "supervisorctl"
    out = subprocess.run([str(ctl), "-c", str(conf), "status"], capture_output=True, text=True, check=False).stdout
    rows = (line.split() for line in out.splitlines())
    return {parts[0].split(":")[-1]: parts[1] for parts in rows if len(parts) >= 2}


def supervised_pids(conf: Path = SUPERVISOR_CONF) -> dict[str, int]:
    """Program name (without the group) → pid, for every RUNNING program (`supervisorctl status`), plus
    supervisord itself: it reads every program's stdout (Envoy access logs, service logs) and writes the
    log files, so it works per request too."""
    ctl = Path(sys.executable).parent / "supervisorctl"
    out = subprocess.run([str(ctl), "-c", str(conf), "status"], capture_output=True, text=True, check=False).stdout
    pids: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] == "RUNNING" and parts[2] == "pid":
            pids[parts[0].split(":")[-1]] = int(parts[3].rstrip(","))
    pidfile = REPO / "var" / "run" / "supervisord.pid"
    if pidfile.exists():
        pids["supervisord"] = int(pidfile.read_text().strip())
    return pids


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process, in seconds (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the ")" the fields start at index 3 of stat(5): utime is field 14, stime 15
    return (int(fields[11]) + int(fields[12])) / TICKS


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and of its children, live and exited: utime + stime of the process and of each
    live child, plus cutime + cstime (the children it has reaped). A child that exits between two
    snapshots moves its time from the live sum into the parent's reaped one, so differences stay right.
    Grandchildren are not looked for (PostgreSQL's backends are all the postmaster's children)."""
    own = _stat(pid)
    if own is None:
        return 0.0
    # After the ")": state is index 0, ppid 1, utime 11, stime 12, cutime 13, cstime 14.
    ticks = sum(int(own[i]) for i in (11, 12, 13, 14))
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        child = _stat(int(entry.name))
        if child is not None and child[1] == str(pid):
            ticks += sum(int(child[i]) for i in (11, 12))
    return ticks / TICKS


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class Snapshot:
    pids: dict[str, int]
    cpu: dict[str, float]

    @classmethod
    def take(cls, pids: dict[str, int]) -> Snapshot:
        return cls(
            dict(pids),
            {name: (tree_cpu_seconds if name in PROCESS_TREES else cpu_seconds)(pid) for name, pid in pids.items()},
        )

    def since(self, before: Snapshot) -> dict[str, float]:
        """CPU seconds each process used between `before` and this snapshot (a restarted process: None→skip)."""
        return {
            name: self.cpu[name] - before.cpu[name]
            for name in self.cpu
            if name in before.cpu and before.pids.get(name) == self.pids[name]
        }


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()
