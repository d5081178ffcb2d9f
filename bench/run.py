"""Benchmark suite: our local cluster against bare servers, adaptive batching, and 1 vs 2 query frontends.

    .venv/bin/python bench/run.py [--quick] [--duration-s 5] [--connections 1,16,64,256]
                                  [--modes suite,batching,frontends] [--out bench/results]

Writes <out>/latest.json, latest.md and latest.png; every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import report
from cluster import SLO_MICROS, BenchCluster
from drive import Point, rss_mib, run_wrk, write_bodies

from clipper.admin.managers.process import free_port

BENCH_DIR = Path(__file__).resolve().parent
MODES = ("suite", "batching", "frontends", "overload")
OVERLOAD_SLO_MS = 50


def machine() -> dict[str, Any]:
    """CPUs, kernel, Python, wrk and the git commit, printed with every run."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=BENCH_DIR
    )
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=BENCH_DIR)
    wrk = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("[")[0].strip()
    return {
        "cpus": os.cpu_count(),
        "cpu_model": next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")
            ),
            platform.processor(),
        ),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": wrk,
        "commit": commit.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else ""),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


class Runner:
    """Holds the settings of one run, the processes it started and the points it measured."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.duration_s: float = args.duration_s
        self.conns: list[int] = args.connections
        self.work = work
        self.out: Path = args.out
        self.repeat: int = args.repeat
        self.points: list[Point] = []
        self.cluster: BenchCluster | None = None
        self.rss: dict[str, float] = {}
        self.scripts = {kind: write_bodies(work, kind) for kind in ("noop", "dense784")}

    # -- driving ---------------------------------------------------------------------------------------

    def series(
        self,
        target: str,
        url: str,
        kind: str,
        pids: dict[str, int],
        conns: list[int] | None = None,
        model: str | None = None,
    ) -> list[Point]:
        """Warm up, then one wrk run per connection count; batch size and defaults when `model` is ours."""
        run_wrk(target, url, self.scripts[kind], 16, 1.0, {})
        out = []
        for c in conns or self.conns:
            before = self.cluster.metrics() if model and self.cluster else None
            p = run_wrk(target, url, self.scripts[kind], c, self.duration_s, pids)
            if before is not None and self.cluster and model:
                p.extra = _batch_stats(before, self.cluster.metrics(), model)
            print(
                f"  {target:<22} c={c:<4} {p.rps:>10,.0f} req/s  "
                f"p50 {p.p50_ms:7.2f} ms  p99 {p.p99_ms:8.2f} ms  "
                f"machine busy {p.cpu_s['machine'] / p.duration_s:.2f} cores"
                f"  errors {p.errors}  {_fmt_extra(p.extra)}",
                flush=True,
            )
            out.append(p)
        self.points += out
        return out

    # -- baselines -------------------------------------------------------------------------------------

    def baseline(self, kind: str, script: str) -> None:
        port = free_port()
        log = open(self.work / f"{kind}.log", "wb")  # closed with the process
        proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "baselines.py"), kind, str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_port(port, proc)
            self.series(kind, f"http://127.0.0.1:{port}/", script, {"server": proc.pid})
        finally:
            _stop(proc)
            log.close()

    # -- our cluster -----------------------------------------------------------------------------------

    def ensure_cluster(self) -> BenchCluster:
        if self.cluster is None:
            self.cluster = BenchCluster(self.work / "cluster")
            self.cluster.start()
            self.cluster.deploy("noop", "noop", -1)
            roles = self.cluster.pids()
            query = min(r for r in roles if r.startswith("query"))
            names = {"redis": "redis", "management": "management", query: "query", "model-noop-1-0": "model"}
            self.rss = rss_mib({name: roles[role] for role, name in names.items()})
            print(f"  idle RSS MiB: {self.rss} total {sum(self.rss.values()):.1f}", flush=True)
        return self.cluster

    def deploy(self, model: str, function: str, batch_size: int, slo_micros: int = SLO_MICROS) -> None:
        """An app and model named `model` serving `models:<function>`, unless already deployed."""
        cluster = self.ensure_cluster()
        if not any(r.startswith(f"model-{model}-1-") for r in cluster.pids()):
            cluster.deploy(model, function, batch_size, slo_micros)

    def pids(self, model: str) -> dict[str, int]:
        """The processes that matter for one target, named for the CPU table."""
        assert self.cluster is not None
        roles = self.cluster.pids()
        out = {k: roles[k] for k in ("redis", "management") if k in roles}
        queries = sorted(r for r in roles if r.startswith("query"))
        models = sorted(r for r in roles if r.startswith(f"model-{model}-1-"))
        for i, r in enumerate(queries):
            out["query" if i == 0 else f"query-{i + 1}"] = roles[r]
        for i, r in enumerate(models):
            out["model" if i == 0 else f"model-{i + 1}"] = roles[r]
        return out

    def ours(
        self, model: str, kind: str, conns: list[int] | None = None, target: str | None = None
    ) -> list[Point]:
        cluster = self.ensure_cluster()
        url = f"{cluster.query_url}/{model}/predict"
        return self.series(target or f"ours-{model}", url, kind, self.pids(model), conns, model)

    # -- modes -----------------------------------------------------------------------------------------

    def suite(self) -> str:
        print("\n== suite: bare baselines, then our cluster ==", flush=True)
        self.baseline("granian-hello", "noop")
        self.baseline("granian-read-await", "noop")
        self.baseline("uvicorn-hello", "noop")
        self.baseline("granian-parse784", "dense784")
        self.baseline("http1-hello", "noop")
        self.baseline("http1-read-await", "noop")
        self.baseline("http1-parse784", "dense784")
        self.ours("noop", "noop")
        self.deploy("dense784", "dense784", -1)
        self.ours("dense784", "dense784")
        suite_points = [p for p in self.points if "@" not in p.target and p.target != "ours-dense784-b1"]
        lines = report.targets(suite_points, sum(self.rss.values()) if self.rss else None)
        print("\n".join(["", "Targets of issue 5:", *lines]), flush=True)
        report.plot(suite_points, self.out / "latest.png")
        return "\n\n".join(
            [
                "### Suite",
                report.suite_tables(suite_points),
                "CPU cores used during each run of our cluster (CPU seconds / wall seconds):",
                report.cpu_table(suite_points),
                "Idle RSS (after start and one deployed noop model, before any load):",
                report.rss_table(self.rss),
                "Targets of issue 5:\n\n```\n" + "\n".join(lines) + "\n```",
            ]
        )

    def batching(self) -> str:
        print("\n== batching: dense784 @64, adaptive (batch_size=-1) vs batch_size=1 ==", flush=True)
        self.deploy("dense784", "dense784", -1)
        self.deploy("dense784-b1", "dense784", 1)
        pts: list[Point] = []
        ratios = []
        for _ in range(self.repeat):  # alternate, so drift of a noisy machine hits both alike
            pair = self.ours("dense784", "dense784", [64], "ours-dense784@adaptive")
            pair += self.ours("dense784-b1", "dense784", [64], "ours-dense784@b1")
            ratios.append(pair[0].rps / pair[1].rps)
            pts += pair
        ratio = statistics.median(ratios)
        # CPU of the whole machine per answered query: what batching saves, whatever caps throughput.
        cpu_us = {
            name: statistics.median(
                p.cpu_s["machine"] / (p.rps * p.duration_s) * 1e6 for p in pts if p.target == name
            )
            for name in ("ours-dense784@adaptive", "ours-dense784@b1")
        }
        verdict = (
            f"{'PASS' if ratio >= 2 else 'MISS'}  adaptive / batch size 1 = {ratio:.2f}x (median of "
            f"{', '.join(f'{r:.2f}' for r in ratios)}); issue 4 needs >= 2x\n"
            f"info  machine CPU per query: adaptive {cpu_us['ours-dense784@adaptive']:.0f} us, batch size 1 "
            f"{cpu_us['ours-dense784@b1']:.0f} us "
            f"({cpu_us['ours-dense784@b1'] / cpu_us['ours-dense784@adaptive']:.2f}x less with batching)"
        )
        print(verdict, flush=True)
        table = report.simple_table(pts)
        return "\n\n".join(["### Adaptive batching (issue 4)", table, f"```\n{verdict}\n```"])

    def frontends(self) -> str:
        print("\n== frontends: noop @64 and @256 with 1, then 2 query frontends ==", flush=True)
        conns = [64, 256]
        pts = self.ours("noop", "noop", conns, "ours-noop@1fe")
        assert self.cluster is not None
        self.cluster.set_frontends(2, "noop")
        note = "second frontend started by set_num_frontends(2); the running container joined it"
        print(f"  {note}", flush=True)
        pts += self.ours("noop", "noop", conns, "ours-noop@2fe")
        self.cluster.set_frontends(1, "noop")
        lines = []
        for c in conns:
            one, two = (
                next(p for p in pts if p.target == t and p.connections == c)
                for t in ("ours-noop@1fe", "ours-noop@2fe")
            )
            lines.append(f"2 frontends / 1 frontend @{c}: {two.rps / one.rps:.2f}x")
        print("\n".join(lines), flush=True)
        return "\n\n".join(
            [
                "### 1 vs 2 query frontends (issue 7)",
                f"Setup: {note}.",
                report.simple_table(pts),
                "CPU cores used:",
                report.cpu_table(pts),
                "```\n" + "\n".join(lines) + "\n```",
            ]
        )

    def overload(self) -> str:
        """Ten times more load than capacity: every accepted query is answered by its deadline."""
        print(f"\n== overload: a 5 ms/query model (capacity ~200/s), SLO {OVERLOAD_SLO_MS} ms ==", flush=True)
        self.deploy("slow5ms", "slow5ms", 1, slo_micros=OVERLOAD_SLO_MS * 1000)
        # Closed loop: each connection waits at most the SLO, so 128 connections offer ~2,500 queries/s.
        pts = self.ours("slow5ms", "noop", [1, 128], "ours-slow5ms")
        heavy = pts[-1]
        served = heavy.rps * heavy.duration_s - heavy.extra.get("defaults", 0)
        verdict = (
            f"@128 connections: {heavy.rps:,.0f} answers/s ({served / heavy.duration_s:,.0f}/s predictions, "
            f"the rest default outputs), p50 {heavy.p50_ms:.1f} ms, p99 {heavy.p99_ms:.1f} ms, "
            f"SLO {OVERLOAD_SLO_MS} ms, {heavy.errors} errors"
        )
        print(verdict, flush=True)
        return "\n\n".join(["### Overload (issue 4)", report.simple_table(pts), f"```\n{verdict}\n```"])

    def cleanup(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None


def _batch_stats(
    before: dict[tuple[str, str], float], after: dict[tuple[str, str], float], model: str
) -> dict[str, float]:
    """Mean batch size of the model and default answers of its app (app = model name) during one run."""
    lab = f'model="{model}",version="1"'
    n = after.get(("clipper_model_batch_size_count", lab), 0) - before.get(
        ("clipper_model_batch_size_count", lab), 0
    )
    s = after.get(("clipper_model_batch_size_sum", lab), 0) - before.get(
        ("clipper_model_batch_size_sum", lab), 0
    )
    key = ("clipper_app_default_predictions_total", f'app="{model}"')
    out = {"defaults": after.get(key, 0) - before.get(key, 0), "batches": n}
    if n:
        out["mean_batch"] = s / n
    return out


def _fmt_extra(extra: dict[str, float]) -> str:
    if not extra:
        return ""
    return f"mean batch {extra.get('mean_batch', float('nan')):.1f}  defaults {extra.get('defaults', 0):.0f}"


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"baseline exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {port} after {timeout_s} s") from None
            time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the run like Ctrl-C: through the `finally` that stops every process."""
    raise KeyboardInterrupt


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 s per point instead of 5")
    ap.add_argument(
        "--duration-s", type=float, default=None, help="seconds per wrk run (default 5, --quick 2)"
    )
    ap.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 64, 256])
    ap.add_argument(
        "--modes", type=lambda s: s.split(","), default=list(MODES), help=f"subset of {','.join(MODES)}"
    )
    ap.add_argument("--blas-threads", type=int, default=1, help="OPENBLAS/OMP threads of model containers")
    ap.add_argument(
        "--repeat", type=int, default=None, help="alternated pairs in batching (default 3, --quick 1)"
    )
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    args = ap.parse_args()
    if args.duration_s is None:
        args.duration_s = 2.0 if args.quick else 5.0
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    unknown = set(args.modes) - set(MODES)
    if unknown:
        ap.error(f"unknown modes {sorted(unknown)}; choose from {MODES}")
    return args


def main() -> None:
    args = parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.blas_threads)
    signal.signal(signal.SIGTERM, _interrupt)
    info = machine()
    print("Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    print(
        f"wrk -t1, {args.duration_s:g} s per point, connections {args.connections}, modes {args.modes}, "
        f"prediction cache off, {args.blas_threads} BLAS thread(s) per container",
        flush=True,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    sections: list[str] = []
    with tempfile.TemporaryDirectory(prefix="clipper-bench-") as tmp:
        runner = Runner(args, Path(tmp))
        try:
            for mode in args.modes:
                try:
                    sections.append(getattr(runner, mode)())
                except KeyboardInterrupt:
                    raise
                except Exception as e:  # noqa: BLE001  # a mode that cannot run says why; the others still run
                    msg = f"mode {mode} could not run: {type(e).__name__}: {e}"
                    print(msg, flush=True)
                    sections.append(f"### {mode}\n\n{msg}")
        except KeyboardInterrupt:
            print("\nInterrupted; stopping every process this run started.", flush=True)
            raise SystemExit(130) from None
        finally:
            runner.cleanup()
    cmd = " ".join([".venv/bin/python bench/run.py", *sys.argv[1:]])
    header = f"Command: `{cmd}`\n\nMachine: " + ", ".join(f"{k} {v}" for k, v in info.items())
    md = "\n\n".join([header, *sections]) + "\n"
    (args.out / "latest.md").write_text(md)
    (args.out / "latest.json").write_text(
        json.dumps(
            {
                "machine": info,
                "args": {k: str(v) for k, v in vars(args).items()},
                "idle_rss_mib": runner.rss,
                "points": [p.as_dict() for p in runner.points],
            },
            indent=1,
        )
    )
    print(f"\nWrote {args.out}/latest.md, latest.json" + (", latest.png" if "suite" in args.modes else ""))
    print(
        f"Processes left running by this run: {len([p for p in psutil.Process().children(recursive=True)])}"
    )


if __name__ == "__main__":
    main()
