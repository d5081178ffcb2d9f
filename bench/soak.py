"""Soak: a local cluster at a fixed share of its capacity for minutes, with bad and aborted requests mixed in
and a model container SIGKILLed every minute. Prints throughput, p99 and the query frontend's RSS over time.

    .venv/bin/python bench/soak.py [--minutes 10] [--load 0.8] [--kill-every-s 60] [--plot soak.png]

The model takes 0.5 ms per input whatever the batch, so two replicas cap capacity near 4,000 queries/s,
well within what the load generator can send from the same machine. First it measures capacity (good
requests answered with 64 connections sending back to back, for 15 s), then drives `load` x capacity
requests per second, open loop, for `minutes`. Of the requests, 90% are good predictions, 5% are bad
(malformed JSON, a wrong type, an unknown app: each must get a 4xx) and 5% are aborted uploads (headers
announcing 4 MiB, 64 KiB of body, then the connection is reset). Verdict: RSS of the query frontend after
warm-up (the first 2 minutes) stays within 10% of its value at warm-up's end, every good request is
answered, and every bad one gets a 4xx.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import BenchCluster

APP = "soak"
WARMUP_S = 120.0
INTERVAL_S = 10.0
CONNECTIONS = 64
REQUEST_TIMEOUT_S = 5.0
ABORTED_SHARE = 0.05
BAD_SHARE = 0.05
ABORT_ANNOUNCED = 4 * 1024 * 1024
ABORT_SENT = 64 * 1024
PATH = b"/%b/predict" % APP.encode()
_GOOD = b'{"input":[%d.0,2.0]}'
_BAD = (b'{"input":[1.0,', b'{"input":"text"}', b'{"input":[true]}')


@dataclass
class Window:
    """What one interval saw."""

    good: int = 0
    defaults: int = 0
    bad_4xx: int = 0
    bad_other: int = 0
    aborted: int = 0
    failed: int = 0  # a good request without a 200 answer in time (hang, reset, 5xx)
    latencies_ms: list[float] = field(default_factory=list)


class Load:
    """HTTP/1.1 load from worker coroutines, each on its own keep-alive connection.

    Open loop: a ticker hands out send times at the target rate and latency counts from the send time a
    request was due, so a slow server shows as latency instead of as a slower client.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.window = Window()
        self._seq = 0

    async def worker(self, due_times: asyncio.Queue[float] | None, stop_at: float) -> None:
        """Send requests of the mix until `stop_at`: when due (open loop) or back to back (`None`)."""
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        while time.monotonic() < stop_at:
            due = time.perf_counter() if due_times is None else await due_times.get()
            kind = random.random()
            if kind < ABORTED_SHARE:
                await self._abort()
                self.window.aborted += 1
                continue
            bad = kind < ABORTED_SHARE + BAD_SHARE
            self._seq += 1
            if bad:
                path = b"/nope/predict" if self._seq % 3 == 0 else PATH
                body = _BAD[self._seq % len(_BAD)]
            else:
                path, body = PATH, _GOOD % (self._seq % 1000)
            try:
                if conn is None:
                    conn = await asyncio.open_connection(self.host, self.port)
                status, answer = await asyncio.wait_for(self._exchange(conn, path, body), REQUEST_TIMEOUT_S)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                if conn is not None:
                    conn[1].close()
                conn = None
                self.window.failed += not bad
                self.window.bad_other += bad
                continue
            self._record(bad, status, answer, due)
        if conn is not None:
            conn[1].close()

    def _record(self, bad: bool, status: int, answer: bytes, due: float) -> None:
        w = self.window
        if bad:
            w.bad_4xx += 400 <= status < 500
            w.bad_other += not 400 <= status < 500
        elif status != 200:
            w.failed += 1
        else:
            w.good += 1
            w.defaults += b'"default":true' in answer
            w.latencies_ms.append((time.perf_counter() - due) * 1000)

    @staticmethod
    async def _exchange(
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: bytes, body: bytes
    ) -> tuple[int, bytes]:
        reader, writer = conn
        writer.write(
            b"POST %b HTTP/1.1\r\nhost: soak\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%b" % (path, len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
        return int(head.split(b" ", 2)[1]), await reader.readexactly(length)

    async def _abort(self) -> None:
        """Announce a large body, send part of it, and reset the connection."""
        _, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(
            b"POST %b HTTP/1.1\r\nhost: soak\r\ncontent-length: %d\r\n\r\n" % (PATH, ABORT_ANNOUNCED)
        )
        writer.write(b"[" + b"1.0," * (ABORT_SENT // 4))
        await writer.drain()
        writer.transport.abort()

    def take(self) -> Window:
        w, self.window = self.window, Window()
        return w


async def capacity(load: Load, seconds: float) -> float:
    """Good requests answered per second with every worker sending back to back (closed loop)."""
    load.take()
    await asyncio.gather(*(load.worker(None, time.monotonic() + seconds) for _ in range(CONNECTIONS)))
    return load.take().good / seconds / (1 - ABORTED_SHARE - BAD_SHARE)


def frontend_rss_mib(cluster: BenchCluster) -> float:
    pids = [pid for role, pid in cluster.pids().items() if role.startswith("query-")]
    return sum(psutil.Process(p).memory_info().rss for p in pids) / 2**20


def kill_one_replica(cluster: BenchCluster) -> str:
    pids = cluster.pids()
    victims = sorted(role for role in pids if role.startswith(f"model-{APP}-"))
    if not victims:
        return "none alive"
    role = random.choice(victims)
    os.kill(pids[role], signal.SIGKILL)
    return role


async def soak(cluster: BenchCluster, args: argparse.Namespace) -> list[dict[str, float]]:
    host, port = cluster.cm.get_query_addr().split(":")
    load = Load(host, int(port))
    cap = await capacity(load, 15)
    rate = cap * args.load
    print(f"capacity {cap:.0f} req/s (closed loop, {CONNECTIONS} connections); driving {rate:.0f} req/s")
    due_times: asyncio.Queue[float] = asyncio.Queue()
    start = time.monotonic()
    end = start + args.minutes * 60
    workers = [asyncio.create_task(load.worker(due_times, end)) for _ in range(CONNECTIONS)]
    rows: list[dict[str, float]] = []
    next_kill = start + args.kill_every_s
    next_report = start + INTERVAL_S
    sent = 0
    t0 = time.perf_counter()
    while time.monotonic() < end:
        now = time.monotonic()
        due = int((now - start) * rate) - sent
        for i in range(due):
            due_times.put_nowait(t0 + (sent + i) / rate)
        sent += due
        if now >= next_kill:
            print(f"  t={now - start:4.0f}s  SIGKILL {kill_one_replica(cluster)}")
            next_kill += args.kill_every_s
        if now >= next_report:
            rows.append(report_row(load.take(), now - start, cluster, due_times.qsize()))
            next_report += INTERVAL_S
        await asyncio.sleep(0.002)
    await asyncio.wait(workers, timeout=REQUEST_TIMEOUT_S * 2)
    return rows


def report_row(w: Window, t_s: float, cluster: BenchCluster, backlog: int) -> dict[str, float]:
    """One interval's numbers, printed as they come."""
    p99 = statistics.quantiles(w.latencies_ms, n=100)[98] if len(w.latencies_ms) > 100 else 0.0
    row = {
        "t_s": round(t_s),
        "answered_per_s": w.good / INTERVAL_S,
        "defaults": w.defaults,
        "failed": w.failed,
        "bad_4xx": w.bad_4xx,
        "bad_other": w.bad_other,
        "aborted": w.aborted,
        "p99_ms": p99,
        "rss_mib": frontend_rss_mib(cluster),
        "backlog": backlog,
    }
    print("  " + "  ".join(f"{k}={v:.1f}" if k == "p99_ms" else f"{k}={v:.0f}" for k, v in row.items()))
    return row


def verdict(rows: list[dict[str, float]]) -> bool:
    after = [r for r in rows if r["t_s"] >= WARMUP_S]
    if not after:
        print("too short for a verdict (warm-up is 2 minutes)")
        return False
    base = after[0]["rss_mib"]
    drift = max(abs(r["rss_mib"] - base) / base for r in after)
    failed = sum(r["failed"] for r in rows)
    bad_other = sum(r["bad_other"] for r in rows)
    ok = drift <= 0.10 and bad_other == 0 and failed == 0
    print(
        f"RSS after warm-up {base:.0f} MiB, largest drift {drift:.1%} (limit 10%); "
        f"good requests without an answer: {failed}; bad requests without a 4xx: {bad_other}"
    )
    print("PASS" if ok else "FAIL")
    return ok


def plot(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t_s"] / 60 for r in rows]
    fig, axes = plt.subplots(3, 1, figsize=(8, 8), sharex=True)
    for ax, key, label in zip(
        axes,
        ("answered_per_s", "p99_ms", "rss_mib"),
        ("answered/s", "p99 (ms)", "frontend RSS (MiB)"),
        strict=True,
    ):
        ax.plot(t, [r[key] for r in rows])
        ax.set_ylabel(label)
        ax.axvline(WARMUP_S / 60, color="grey", linestyle=":")
    axes[-1].set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--load", type=float, default=0.8, help="share of the measured capacity")
    parser.add_argument("--kill-every-s", type=float, default=60.0)
    parser.add_argument("--plot", type=Path, default=None, help="write a PNG of the three series here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clipper-soak-") as tmp:
        cluster = BenchCluster(Path(tmp), name="soak")
        cluster.start()
        try:
            cluster.conn.register_application(APP, "doubles", "-1", 100_000)
            cluster.conn.deploy_model(APP, "1", "doubles", "models:per_input_500us", num_replicas=2)
            cluster.conn.link_model_to_app(APP, APP)
            cluster.conn.wait_for_model(APP, "1", num_replicas=2)
            rows = uvloop.run(soak(cluster, args))
        finally:
            cluster.stop()
    if args.plot is not None:
        plot(rows, args.plot)
    sys.exit(0 if verdict(rows) else 1)


if __name__ == "__main__":
    main()
