"""Fault injection on a real local cluster (issue 11): SIGKILL its processes under load, alone and in orders.

For every fault, several client threads keep sending predictions while the test SIGKILLs one process or
several in turn. Then, with no user action: each killed process runs again (the supervisor restarted it),
fresh queries get real predictions, and every app, model, version, current version and link reads as it did.
During the fault every request got a prediction, the default output, a 503, or a refused/reset connection:
none waited out its client timeout (set far above the SLO) and none got a wrong answer.
`pytest -s` prints what clients saw per fault, the table for the issue note.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import requests

from clipper.admin import ClipperConnection, LocalContainerManager
from clipper.admin.deployers.python import create_endpoint
from clipper.admin.exceptions import ClipperException
from clipper.admin.managers.process import ProcessRecord, is_alive
from tests.admin.conftest import make_manager
from tests.conftest import wait_until

pytestmark = pytest.mark.slow

APP = "faults"
MODEL = "faults"
SLO_MICROS = 200_000
CLIENTS = 3
CLIENT_TIMEOUT_S = TIMEOUT_S = 10.0  # 50x the SLO: a request still unanswered by then hung
MAX_REQUESTS_PER_CLIENT = 20_000
RECOVERY_TIMEOUT_S = 60.0
ERROR_PAUSE_S = 0.01  # a client pauses after a refused request rather than spin on a dead port


def add(xs: list[Any]) -> list[str]:
    return [str(float(sum(x))) for x in xs]


@dataclass
class Tally:
    """What one client saw."""

    predictions: int = 0
    defaults: int = 0
    rejected: int = 0  # 503
    refused: int = 0  # connection refused or reset
    hung: int = 0  # no answer within CLIENT_TIMEOUT_S
    wrong: list[str] = field(default_factory=list)  # a prediction that is not the sum, or another status
    max_latency_s: float = 0.0

    @property
    def total(self) -> int:
        return self.predictions + self.defaults + self.rejected + self.refused + self.hung + len(self.wrong)

    def add(self, other: Tally) -> None:
        self.predictions += other.predictions
        self.defaults += other.defaults
        self.rejected += other.rejected
        self.refused += other.refused
        self.hung += other.hung
        self.wrong += other.wrong
        self.max_latency_s = max(self.max_latency_s, other.max_latency_s)


class Load:
    """CLIENTS threads, each a bounded loop of predictions on fresh inputs (never a cache hit)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url, self.headers = url, headers
        self.tallies = [Tally() for _ in range(CLIENTS)]
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(CLIENTS)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(CLIENT_TIMEOUT_S + 5)
        assert not any(t.is_alive() for t in self.threads), "a client thread did not finish"

    @property
    def total(self) -> int:
        return sum(t.total for t in self.tallies)

    def seen(self) -> Tally:
        out = Tally()
        for t in self.tallies:
            out.add(t)
        return out

    def _client(self, index: int) -> None:
        tally = self.tallies[index]
        with requests.Session() as session:
            for i in range(MAX_REQUESTS_PER_CLIENT):
                if self.stop.is_set():
                    return
                x = [float(index), float(i), 0.5]
                start = time.monotonic()
                failed = True
                try:
                    r = session.post(
                        self.url, json={"input": x}, headers=self.headers, timeout=CLIENT_TIMEOUT_S
                    )
                except requests.Timeout:  # before ConnectionError: ConnectTimeout is both
                    tally.hung += 1
                except requests.ConnectionError:
                    tally.refused += 1
                else:
                    failed = not _classify(r, sum(x), tally)
                tally.max_latency_s = max(tally.max_latency_s, time.monotonic() - start)
                if failed:
                    self.stop.wait(ERROR_PAUSE_S)


def _classify(r: requests.Response, expected: float, tally: Tally) -> bool:
    """Count the answer; True if it was a prediction or a default output."""
    if r.status_code == 503:
        tally.rejected += 1
        return False
    if r.status_code != 200:
        tally.wrong.append(f"{r.status_code}: {r.text[:200]}")
        return False
    answer = r.json()
    if answer["default"]:
        tally.defaults += 1
    elif float(answer["output"]) == expected:
        tally.predictions += 1
    else:
        tally.wrong.append(f"output {answer['output']!r} for expected {expected}")
    return True


@dataclass
class Row:
    fault: str
    seen: Tally
    recovered_s: float
    replica_records: tuple[int, int]


Kill = Callable[[LocalContainerManager], str]


def record(manager: LocalContainerManager, role: str) -> ProcessRecord | None:
    return next((r for r in manager.procs.records() if r.role == role), None)


def kill(role: str) -> Kill:
    def step(manager: LocalContainerManager) -> str:
        rec = record(manager, role)
        assert rec is not None and is_alive(rec), f"{role} is not running before the fault"
        psutil.Process(rec.pid).kill()
        return f"{role}:{rec.pid}"

    return step


@dataclass(frozen=True)
class Fault:
    name: str
    replicas: int
    frontends: int
    steps: tuple[Kill, ...]
    roles: tuple[str, ...]


def fault(name: str, replicas: int, frontends: int, *roles: str) -> Fault:
    return Fault(name, replicas, frontends, tuple(kill(r) for r in roles), roles)


REPLICA, FRONTEND = f"model-{MODEL}-1-0", "query-0"
FAULTS = [  # in this order: each leaves the cluster as the next needs it
    fault("model replica (of 2)", 2, 1, REPLICA),
    fault("model replica (of 1)", 1, 1, REPLICA),
    fault("query frontend (of 1)", 1, 1, FRONTEND),
    fault("management frontend", 1, 1, "management"),
    fault("Redis", 1, 1, "redis"),
    fault("Redis, then query frontend", 1, 1, "redis", FRONTEND),
    fault("model replica, then Redis", 1, 1, REPLICA, "redis"),
    fault("management, then Redis, then model", 1, 1, "management", "redis", REPLICA),
    fault("query frontend (of 2)", 1, 2, FRONTEND),
    fault("query frontend (of 2), then Redis", 1, 2, FRONTEND, "redis"),
]


@pytest.fixture(scope="module")
def report() -> Iterator[list[Row]]:
    rows: list[Row] = []
    yield rows
    header = (
        f"{'fault (SIGKILL)':<36} {'requests':>8} {'predict':>8} {'default':>8} {'503':>5} {'refused':>8} "
        f"{'hung':>5} {'wrong':>5} {'max lat s':>9} {'recovered s':>11} {'replica recs':>12}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        s = r.seen
        print(
            f"{r.fault:<36} {s.total:>8} {s.predictions:>8} {s.defaults:>8} {s.rejected:>5} {s.refused:>8} "
            f"{s.hung:>5} {len(s.wrong):>5} {s.max_latency_s:>9.2f} {r.recovered_s:>11.2f} "
            f"{r.replica_records[0]:>5} -> {r.replica_records[1]:<3}"
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClipperConnection]:
    """One local cluster for the module: app `faults` on model `faults` (versions 1 and 2, 1 current)."""
    manager = make_manager(Path(tmp_path_factory.mktemp("faults")))
    conn = ClipperConnection(manager)
    conn.start_clipper()
    try:
        create_endpoint(conn, APP, "doubles", add, default_output="DEFAULT", slo_micros=SLO_MICROS)
        conn.register_model(MODEL, "2", "doubles", labels=["spare"])  # becomes current...
        conn.set_model_version(MODEL, "1")  # ...and version 1 serves again
        conn.register_application("idle", "strings", "none", 50_000)
        yield conn
    finally:
        conn.stop_all(graceful=False)


def config_state(conn: ClipperConnection) -> dict[str, Any]:
    """Every app, model version, current version and link, as the management API reports them."""
    apps = sorted(conn.get_all_apps(verbose=True), key=lambda a: a["name"])
    models = sorted(conn.get_all_models(verbose=True), key=lambda m: (m["model_name"], m["model_version"]))
    return {
        "apps": apps,
        "models": models,
        "links": {a["name"]: conn.get_linked_models(a["name"]) for a in apps},
        "current": {m["model_name"]: conn.get_current_model_version(m["model_name"]) for m in models},
    }


def answered(conn: ClipperConnection, headers: dict[str, str], fresh: Iterator[int]) -> bool:
    """A new, never-asked query gets a real prediction."""
    x = [float(next(fresh)), 0.25]
    try:
        r = requests.post(
            f"http://{conn.get_query_addr()}/{APP}/predict", json={"input": x}, headers=headers, timeout=5
        )
    except requests.RequestException:
        return False
    return r.status_code == 200 and not r.json()["default"] and float(r.json()["output"]) == sum(x)


def shape(conn: ClipperConnection, manager: LocalContainerManager, replicas: int, frontends: int) -> None:
    if manager.get_num_frontends() != frontends:
        conn.set_num_frontends(frontends)
    if manager.get_num_replicas(MODEL, "1") != replicas:
        conn.set_num_replicas(MODEL, replicas, "1")
    wait_until(
        lambda: len(replica_ids(conn) or ()) == replicas * frontends,
        RECOVERY_TIMEOUT_S,
        f"{replicas} replica(s) to join {frontends} frontend(s)",
    )


def read_state(conn: ClipperConnection) -> dict[str, Any]:
    """The config state, polling while the management frontend is still coming back."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT_S
    while True:
        try:
            return config_state(conn)
        except (ClipperException, requests.RequestException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(cluster: ClipperConnection, report: list[Row], fault: Fault) -> None:
    conn = cluster
    manager = conn.cm
    assert isinstance(manager, LocalContainerManager)
    shape(conn, manager, fault.replicas, fault.frontends)
    token = manager.get_query_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    fresh = itertools.count(1_000_000)
    wait_until(lambda: answered(conn, headers, fresh), RECOVERY_TIMEOUT_S, "predictions before the fault")
    before = config_state(conn)
    ids_before = replica_ids(conn) or set()

    with Load(f"http://{conn.get_query_addr()}/{APP}/predict", headers) as load:
        wait_until(lambda: load.total >= 30, 30, "load to flow")
        killed_at = time.monotonic()
        victims = [step(manager) for step in fault.steps]
        old_pids = {v.split(":")[0]: int(v.split(":")[1]) for v in victims}

        def restarted() -> bool:
            recs = [record(manager, role) for role in fault.roles]
            return all(r is not None and r.pid != old_pids[r.role] and is_alive(r) for r in recs)

        wait_until(restarted, RECOVERY_TIMEOUT_S, f"the supervisor to restart {', '.join(fault.roles)}")
        wait_until(lambda: answered(conn, headers, fresh), RECOVERY_TIMEOUT_S, "real predictions again")
        wait_until(lambda: rejoined(conn, fault, ids_before), RECOVERY_TIMEOUT_S, "replicas to rejoin")
        recovered_s = time.monotonic() - killed_at
        mark = load.total
        wait_until(lambda: load.total >= mark + 30, 30, "load after recovery")
    seen = load.seen()

    after = read_state(conn)
    report.append(Row(fault.name, seen, recovered_s, (len(ids_before), len(replica_ids(conn) or ()))))
    assert after == before
    assert seen.hung == 0, f"{seen.hung} request(s) got no answer within {CLIENT_TIMEOUT_S} s"
    assert seen.wrong == [], seen.wrong[:5]
    assert seen.predictions > 0
    follows_new_app(conn, headers, fresh)


def replica_ids(conn: ClipperConnection) -> set[int] | None:
    """Ids of the replica records the management API lists; None while it cannot answer (restarting)."""
    try:
        return {r["model_replica_id"] for r in conn.get_all_model_replicas(verbose=True)}
    except (ClipperException, requests.RequestException):
        return None


def rejoined(conn: ClipperConnection, fault: Fault, ids_before: set[int]) -> bool:
    """Every replica is connected to every frontend again, with no record left by a killed process.

    A connection between a live replica and a live frontend keeps its record (and id) through the fault;
    each other pair reconnected, so its record is new.
    """
    ids = replica_ids(conn)
    if ids is None:
        return False
    killed_replicas = sum(r.startswith("model-") for r in fault.roles)
    killed_frontends = sum(r.startswith("query-") for r in fault.roles)
    kept = (fault.replicas - killed_replicas) * (fault.frontends - killed_frontends)
    return len(ids) == fault.replicas * fault.frontends and len(ids & ids_before) == kept


def follows_new_app(conn: ClipperConnection, headers: dict[str, str], fresh: Iterator[int]) -> None:
    """Every query frontend still follows the store: an app added now is served, then removed again."""
    conn.register_application("added-after-fault", "doubles", "DEFAULT", SLO_MICROS)
    conn.link_model_to_app("added-after-fault", MODEL)
    url = f"http://{conn.get_query_addr()}/added-after-fault/predict"

    def served_in_a_row(n: int = 20) -> bool:  # new connections spread over every frontend
        for _ in range(n):
            x = [float(next(fresh)), 0.75]
            r = requests.post(url, json={"input": x}, headers=headers, timeout=5)
            if r.status_code != 200 or r.json()["default"] or float(r.json()["output"]) != sum(x):
                return False
        return True

    try:
        wait_until(served_in_a_row, RECOVERY_TIMEOUT_S, "an app added after the fault to be served")
    finally:
        conn.delete_application("added-after-fault")
