"""Turns benchmark points into markdown tables, a PNG plot and PASS/MISS lines for the targets of issue 5."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from drive import Point

SLO_MS = 100.0
HELLO = ("granian-hello", "uvicorn-hello")


def by(points: Sequence[Point], target: str) -> dict[int, Point]:
    return {p.connections: p for p in points if p.target == target}


def _f(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


def _lat(p: Point | None) -> str:
    return f"{_f(p.rps)} | {p.p50_ms:.2f} | {p.p99_ms:.2f}" if p else "– | – | –"


def _ratio(a: Point | None, b: Point | None) -> str:
    return f"{a.rps / b.rps:.0%}" if a and b and b.rps else "–"


def suite_tables(points: Sequence[Point]) -> str:
    """Noop and dense784 tables: ours against the bare servers, one row per connection count."""
    conns = sorted({p.connections for p in points})
    ours, gr, uv = by(points, "ours-noop"), by(points, "granian-hello"), by(points, "uvicorn-hello")
    ra = by(points, "granian-read-await")
    dense, parse = by(points, "ours-dense784"), by(points, "granian-parse784")
    lines = [
        "**(a) noop model** — req/s | p50 ms | p99 ms (read-await: granian reading the body and awaiting "
        "one future, the floor of any forwarding frontend)",
        "",
        "| conns | ours req/s | p50 | p99 | granian req/s | p50 | p99 | read-await req/s | p50 | p99 "
        "| uvicorn req/s | p50 | p99 | ours/granian | ours/read-await | ours/uvicorn |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in conns:
        lines.append(
            f"| {c} | {_lat(ours.get(c))} | {_lat(gr.get(c))} | {_lat(ra.get(c))} | {_lat(uv.get(c))} "
            f"| {_ratio(ours.get(c), gr.get(c))} | {_ratio(ours.get(c), ra.get(c))} "
            f"| {_ratio(ours.get(c), uv.get(c))} |"
        )
    lines += [
        "",
        "**(b) dense784 model, adaptive batching** (1000 distinct bodies, cache off) against bare granian "
        "parsing the same bodies",
        "",
        "| conns | ours req/s | p50 | p99 | mean batch | default answers | parse784 req/s | p50 | p99 "
        "| ours/parse784 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in conns:
        d = dense.get(c)
        mb = f"{d.extra.get('mean_batch', float('nan')):.1f}" if d else "–"
        df = f"{d.extra.get('defaults', 0):.0f}" if d else "–"
        lines.append(f"| {c} | {_lat(d)} | {mb} | {df} | {_lat(parse.get(c))} | {_ratio(d, parse.get(c))} |")
    return "\n".join(lines)


def cpu_table(points: Sequence[Point]) -> str:
    """CPU cores used per process (CPU seconds / wall seconds) in each run; `machine` counts every process."""
    names = ["query", "query-2", "model", "model-2", "redis", "management", "wrk", "machine"]
    lines = [
        "| target | conns | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    for p in points:
        if p.target.startswith("ours"):
            cells = [f"{p.cpu_s[n] / p.duration_s:.2f}" if n in p.cpu_s else "–" for n in names]
            lines.append(f"| {p.target} | {p.connections} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rss_table(rss: dict[str, float]) -> str:
    lines = ["| process | idle RSS MiB |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in rss.items()]
    lines.append(f"| **cluster total** | **{sum(rss.values()):.1f}** |")
    return "\n".join(lines)


def simple_table(points: Sequence[Point]) -> str:
    """Rows of arbitrary targets, with mean batch size and default answers where known."""
    lines = [
        "| target | conns | req/s | p50 ms | p99 ms | mean batch | default answers |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for p in points:
        mb = p.extra.get("mean_batch")
        lines.append(
            f"| {p.target} | {p.connections} | {_f(p.rps)} | {p.p50_ms:.2f} | {p.p99_ms:.2f} "
            f"| {'–' if mb is None else f'{mb:.1f}'} | {p.extra.get('defaults', 0):.0f} |"
        )
    return "\n".join(lines)


def targets(points: Sequence[Point], rss_total: float | None) -> list[str]:
    """PASS/MISS lines for the targets of issue 5, with the numbers."""
    out: list[str] = []

    def check(ok: bool, text: str) -> None:
        out.append(f"{'PASS' if ok else 'MISS'}  {text}")

    ours, dense, parse = by(points, "ours-noop"), by(points, "ours-dense784"), by(points, "granian-parse784")
    hello = [by(points, t) for t in HELLO]
    if 64 in ours and all(64 in h for h in hello):
        best = max(h[64].rps for h in hello)
        r = ours[64].rps
        check(
            r >= 0.5 * best and r >= 20_000,
            f"noop @64: {r:,.0f} req/s = {r / best:.0%} of fastest bare ({best:,.0f}); "
            "need >=50% and >=20,000",
        )
        floor = by(points, "granian-read-await").get(64)
        if floor:
            out.append(
                f"info  noop @64 = {r / floor.rps:.0%} of granian reading the body and awaiting one future "
                f"({floor.rps:,.0f} req/s), the floor of any frontend that forwards and waits"
            )
    if 64 in dense and 64 in parse:
        r, b = dense[64].rps, parse[64].rps
        check(
            r >= 0.6 * b and r >= 10_000,
            f"dense784 @64: {r:,.0f} req/s = {r / b:.0%} of bare parse784 ({b:,.0f}); "
            "need >=60% and >=10,000",
        )
    if 1 in ours and all(1 in h for h in hello):
        best = min(h[1].p50_ms for h in hello)
        added = ours[1].p50_ms - best
        check(
            added <= 0.15,
            f"latency added @1: p50 {ours[1].p50_ms:.3f} ms - bare {best:.3f} ms = {added:.3f} ms; "
            "need <=0.15",
        )
    for name, series in (("noop", ours), ("dense784", dense)):
        if 64 in series and 256 in series:
            a, b = series[64], series[256]
            check(
                b.rps >= 0.9 * a.rps and b.p99_ms <= SLO_MS and b.errors == 0,
                f"{name} @256: {b.rps:,.0f} req/s = {b.rps / a.rps:.0%} of @64, p99 {b.p99_ms:.1f} ms, "
                f"{b.errors} errors; need >=90%, p99 <= SLO {SLO_MS:.0f} ms, no errors",
            )
    if rss_total is not None:
        check(rss_total <= 200, f"idle RSS of the cluster: {rss_total:.1f} MiB; need <=200 MiB")
    return out


def plot(points: Sequence[Point], path: Path) -> None:
    """Throughput and p99 against connections, ours against the baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = ["ours-noop", "granian-hello", "granian-read-await", "uvicorn-hello"]
    order += ["ours-dense784", "granian-parse784"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for target in order:
        series = by(points, target)
        if not series:
            continue
        xs = sorted(series)
        style = "-o" if target.startswith("ours") else "--s"
        ax1.plot(xs, [series[x].rps for x in xs], style, label=target)
        ax2.plot(xs, [series[x].p99_ms for x in xs], style, label=target)
    for ax, label in ((ax1, "requests / s"), (ax2, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("connections (wrk -t1)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    ax2.set_yscale("log")
    ax1.legend(fontsize=8)
    fig.suptitle("clipper query path against bare servers (same run, same machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
