"""Turns benchmark points into markdown tables, a PNG plot and PASS/MISS lines for the targets of issue 5."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from drive import Point

SLO_MS = 100.0
HELLO = ("http1-hello", "granian-hello", "uvicorn-hello")
READ_AWAIT = ("http1-read-await", "granian-read-await")
PARSE784 = ("http1-parse784", "granian-parse784")


def by(points: Sequence[Point], target: str) -> dict[int, Point]:
    return {p.connections: p for p in points if p.target == target}


def best(points: Sequence[Point], targets: Sequence[str], conns: int) -> Point | None:
    """The fastest of `targets` at `conns` connections."""
    found = [p for t in targets if (p := by(points, t).get(conns)) is not None]
    return max(found, key=lambda p: p.rps, default=None)


def _f(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


def _lat(p: Point | None) -> str:
    return f"{_f(p.rps)} | {p.p50_ms:.2f} | {p.p99_ms:.2f}" if p else "– | – | –"


def _ratio(a: Point | None, b: Point | None) -> str:
    return f"{a.rps / b.rps:.0%}" if a and b and b.rps else "–"


def _against(points: Sequence[Point], ours: str, baselines: Sequence[str], title: str) -> list[str]:
    """One row per connection count: ours, then each baseline, then ours as a share of each."""
    conns = sorted({p.connections for p in points if p.target == ours})
    present = [b for b in baselines if by(points, b)]
    head = "| conns | ours req/s | p50 | p99 | mean batch | defaults | "
    head += " | ".join(f"{b} req/s | p50 | p99" for b in present)
    head += " | " + " | ".join(f"ours/{b}" for b in present) + " |"
    lines = [title, "", head, "|---:" * (6 + 4 * len(present)) + "|"]
    mine = by(points, ours)
    for c in conns:
        d = mine.get(c)
        extra = (
            f"{d.extra['mean_batch']:.1f} | {d.extra.get('defaults', 0):.0f}" if d and d.extra else "– | –"
        )
        cells = [_lat(d), extra] + [_lat(by(points, b).get(c)) for b in present]
        cells += [_ratio(d, by(points, b).get(c)) for b in present]
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


def suite_tables(points: Sequence[Point]) -> str:
    """Noop and dense784 tables: ours against the bare servers, one row per connection count."""
    lines = _against(
        points,
        "ours-noop",
        [*HELLO, *READ_AWAIT],
        "**(a) noop model** — req/s | p50 ms | p99 ms (read-await: a bare server reading the body and "
        "awaiting one future, the floor of any forwarding frontend)",
    )
    lines += [""]
    lines += _against(
        points,
        "ours-dense784",
        PARSE784,
        "**(b) dense784 model, adaptive batching** (1000 distinct bodies, cache off) against bare servers "
        "parsing the same bodies",
    )
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

    def share(name: str, series: dict[int, Point], bare: Point | None, need: float, floor: int) -> None:
        """Ours @64 against the fastest bare server of its kind: a share of it and an absolute floor."""
        if 64 in series and bare:
            r = series[64].rps
            check(
                r >= need * bare.rps and r >= floor,
                f"{name} @64: {r:,.0f} req/s = {r / bare.rps:.0%} of fastest bare ({bare.target}, "
                f"{bare.rps:,.0f}); need >={need:.0%} and >={floor:,}",
            )

    ours, dense = by(points, "ours-noop"), by(points, "ours-dense784")
    share("noop", ours, best(points, HELLO, 64), 0.5, 20_000)
    floor = best(points, READ_AWAIT, 64)
    if 64 in ours and floor:
        out.append(
            f"info  noop @64 = {ours[64].rps / floor.rps:.0%} of a bare server reading the body and awaiting "
            f"one future ({floor.target}, {floor.rps:,.0f} req/s), the floor of any frontend that forwards"
        )
    share("dense784", dense, best(points, PARSE784, 64), 0.6, 10_000)
    bare1 = [p for t in HELLO if (p := by(points, t).get(1)) is not None]
    if 1 in ours and bare1:
        fastest = min(p.p50_ms for p in bare1)
        added = ours[1].p50_ms - fastest
        check(
            added <= 0.15,
            f"latency added @1: p50 {ours[1].p50_ms:.3f} ms - bare {fastest:.3f} ms = {added:.3f} ms; "
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

    order = ["ours-noop", *HELLO, *READ_AWAIT, "ours-dense784", *PARSE784]
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
