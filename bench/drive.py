"""Drives one URL with wrk (-t1, POST from a Lua script), measuring CPU seconds of the server processes."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson
import psutil

NOOP_BODY = b'{"input":[1.0,2.0]}'
_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_LUA = """
local bodies = {}
for line in io.lines("%(path)s") do bodies[#bodies + 1] = line end
local requests = {}
local i = 0
function init(args)
  for k, b in ipairs(bodies) do
    requests[k] = wrk.format("POST", nil, {["Content-Type"] = "application/json"}, b)
  end
end
function request()
  i = i %% #requests + 1
  return requests[i]
end
"""


@dataclass
class Point:
    """One wrk run against one target at one connection count."""

    target: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_s: dict[str, float] = field(default_factory=dict)
    duration_s: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def write_bodies(directory: Path, kind: str, count: int = 1000) -> Path:
    """A Lua script that cycles through `count` distinct bodies (so no cache answers), one per line."""
    if kind == "noop":
        lines = [NOOP_BODY] * 1
    else:
        rng = np.random.default_rng(1)
        lines = [orjson.dumps({"input": rng.random(784).round(4).tolist()}) for _ in range(count)]
    return write_script(directory, kind, lines)


def write_script(directory: Path, kind: str, bodies: list[bytes]) -> Path:
    """A Lua script for wrk that POSTs `bodies` (JSON, one line each) in turn; `kind` names its files."""
    bodies_path = directory / f"bodies-{kind}.txt"
    bodies_path.write_bytes(b"\n".join(bodies) + b"\n")
    script = directory / f"post-{kind}.lua"
    script.write_text(_LUA % {"path": bodies_path})
    return script


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    if not m:
        raise ValueError(f"unparsed wrk latency {value!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(text: str) -> dict[str, float]:
    """Requests/sec, p50/p99 (ms), total requests and errors (socket errors + non-2xx) from wrk --latency."""
    out: dict[str, float] = {"errors": 0}
    for line in text.splitlines():
        s = line.split()
        if line.startswith("Requests/sec:"):
            out["rps"] = float(s[1])
        elif len(s) == 2 and s[0] in ("50%", "99%"):
            out["p" + s[0][:-1]] = _ms(s[1])
        elif "requests in" in line:
            out["requests"] = int(s[0])
        elif line.strip().startswith("Socket errors:"):
            out["errors"] += sum(int(n) for n in re.findall(r"\d+", line))
        elif line.strip().startswith("Non-2xx"):
            out["errors"] += int(s[-1])
    if "rps" not in out:
        raise RuntimeError(f"wrk gave no result:\n{text}")
    return out


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    times = {}
    for name, pid in pids.items():
        try:
            t = psutil.Process(pid).cpu_times()
            times[name] = t.user + t.system
        except psutil.NoSuchProcess:
            times[name] = float("nan")
    return times


def _busy_s() -> float:
    """CPU seconds the whole machine spent not idle (all cores) since boot."""
    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0)


def run_wrk(
    target: str, url: str, script: Path, connections: int, duration_s: float, pids: dict[str, int]
) -> Point:
    """One wrk run; CPU seconds of each named pid and of wrk itself (from wait4's rusage) during it."""
    before, machine_before = _cpu(pids), _busy_s()
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--latency", "--timeout", "10s", "-s"]
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([*cmd, str(script), url], stdout=out, stderr=subprocess.STDOUT)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read().decode()
    after, machine_after = _cpu(pids), _busy_s()
    if proc.returncode != 0:
        raise RuntimeError(f"wrk exited {proc.returncode}:\n{text}")
    r = parse_wrk(text)
    cpu = {name: round(after[name] - before[name], 3) for name in pids}
    cpu["wrk"] = round(usage.ru_utime + usage.ru_stime, 3)
    cpu["machine"] = round(machine_after - machine_before, 3)  # every process's, others' included
    return Point(
        target=target,
        connections=connections,
        rps=r["rps"],
        p50_ms=r.get("p50", float("nan")),
        p99_ms=r.get("p99", float("nan")),
        requests=int(r.get("requests", 0)),
        errors=int(r["errors"]),
        cpu_s=cpu,
        duration_s=duration_s,
    )


def rss_mib(pids: dict[str, int]) -> dict[str, float]:
    """Resident set size of each pid, MiB."""
    out = {}
    for name, pid in pids.items():
        try:
            out[name] = round(psutil.Process(pid).memory_info().rss / 2**20, 1)
        except psutil.NoSuchProcess:
            out[name] = float("nan")
    return out
