"""Per-query cost of each model-selection policy next to the default, on the noop model, in one run.

    .venv/bin/python bench/selection.py [--duration-s 5] [--repeat 3] [--connections 64]

One local cluster, two noop models (one replica each), one app per policy over both: `split` 50/50,
`shadow` (the second model a candidate), `exp3`, `exp4` (both combined); `default` (one linked model, as
Clipper) on a third noop model with two replicas; and `client-split`, two default apps on the two models
that the load generator alternates between. `client-split` has the queues `split` has (one per model, each
with half the traffic, so smaller batches than one queue over two replicas) without any policy code, so
`split` against it is the cost of selection itself.
wrk drives each app in turn, alternating, `repeat` times; the table gives the median requests/s and the
machine's CPU per query. Verdict: `split` and `exp3` within 10% of `client-split` (selection must not become
the bottleneck); `shadow` and `exp4` ask two models per query, so they cost more by design.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster import BenchCluster
from drive import NOOP_BODY, run_wrk, write_bodies

MODELS = ("n1", "n2")
ALONE = "n0"  # the default app's one model, with as many replicas as the others have together
POLICIES: dict[str, tuple[str | None, dict[str, Any]]] = {
    "default": (None, {}),
    "split": ("split", {"weights": {"n1": 0.5, "n2": 0.5}}),
    "shadow": ("shadow", {"primary": "n1"}),
    "exp3": ("exp3", {"gamma": 0.1}),
    "exp4": ("exp4", {"combine": "vote"}),
}
WITHIN = 0.10
PAIR = ("pair-1", "pair-2")  # two default apps, one per model: the client splits, no policy does
_ALTERNATE = """
local paths = {"/%s/predict", "/%s/predict"}
local requests = {}
local i = 0
function init(args)
  for k, path in ipairs(paths) do
    requests[k] = wrk.format("POST", path, {["Content-Type"] = "application/json"}, '%s')
  end
end
function request()
  i = i %% #requests + 1
  return requests[i]
end
"""


def setup(cluster: BenchCluster) -> None:
    conn = cluster.conn
    for model in MODELS:
        conn.deploy_model(model, "1", "doubles", "models:noop")
    conn.deploy_model(ALONE, "1", "doubles", "models:noop", num_replicas=len(MODELS))
    for app, model in zip(PAIR, MODELS, strict=True):
        conn.register_application(app, "doubles", "-1", 100_000)
        conn.link_model_to_app(app, model)
    for app, (policy, params) in POLICIES.items():
        conn.register_application(app, "doubles", "-1", 100_000)
        conn.link_model_to_app(app, ALONE if policy is None else MODELS[0])
        if policy is not None:  # a multi-model policy first, then the second link, then the real params
            conn.set_app_policy(app, "exp3")
            conn.link_model_to_app(app, MODELS[1])
            conn.set_app_policy(app, policy, **params)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration-s", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    targets = [*POLICIES, "client-split"]
    rps: dict[str, list[float]] = {app: [] for app in targets}
    cpu_us: dict[str, list[float]] = {app: [] for app in targets}
    frontend_us: dict[str, list[float]] = {app: [] for app in targets}
    with tempfile.TemporaryDirectory(prefix="clipper-selection-") as tmp:
        cluster = BenchCluster(Path(tmp), name="selection")
        cluster.start()
        try:
            setup(cluster)
            script = write_bodies(Path(tmp), "noop")
            alternate = Path(tmp) / "alternate.lua"
            alternate.write_text(_ALTERNATE % (*PAIR, NOOP_BODY.decode()))
            scripts = dict.fromkeys(POLICIES, script) | {"client-split": alternate}

            def url(app: str) -> str:
                return f"{cluster.query_url}/{PAIR[0] if app == 'client-split' else app}/predict"

            for app in targets:  # warm every path once
                run_wrk(app, url(app), scripts[app], args.connections, 1, {})
            for r in range(args.repeat):
                for app in targets if r % 2 == 0 else reversed(targets):
                    point = run_wrk(
                        app, url(app), scripts[app], args.connections, args.duration_s, cluster.pids()
                    )
                    if point.errors:
                        raise RuntimeError(f"{app}: {point.errors} errors")
                    rps[app].append(point.rps)
                    per_query = 1e6 / max(point.requests, 1)
                    cpu_us[app].append(point.cpu_s["machine"] * per_query)
                    frontend_us[app].append(point.cpu_s["query-0"] * per_query)
                    print(f"  {app:8} run {r + 1}: {point.rps:9,.0f} req/s  p99 {point.p99_ms:6.2f} ms")
            metrics = cluster.metrics()
            for model in (ALONE, *MODELS):
                labels = f'model="{model}",version="1"'
                total = metrics.get(("clipper_model_batch_size_sum", labels), 0.0)
                count = metrics.get(("clipper_model_batch_size_count", labels), 0.0)
                print(f"  mean batch of {model}: {total / max(count, 1):.1f} over {count:,.0f} batches")
        finally:
            cluster.stop()
    base = statistics.median(rps["client-split"])
    print(f"\n| policy | req/s (median of {args.repeat}) | vs client-split | CPU/query: machine | frontend |")
    print("|---|---:|---:|---:|---:|")
    for app in targets:
        median = statistics.median(rps[app])
        machine, frontend = statistics.median(cpu_us[app]), statistics.median(frontend_us[app])
        print(f"| {app} | {median:,.0f} | {median / base:.2f} | {machine:.0f} us | {frontend:.1f} us |")
    slow = [app for app in ("split", "exp3") if statistics.median(rps[app]) < (1 - WITHIN) * base]
    print("PASS" if not slow else f"MISS: {', '.join(slow)} more than {WITHIN:.0%} below default")
    sys.exit(1 if slow else 0)


if __name__ == "__main__":
    main()
