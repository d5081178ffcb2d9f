"""`clipper`: start, inspect and use a local cluster from the shell; each command wraps ClipperConnection."""

from __future__ import annotations

import json
import runpy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import requests
from rich.console import Console
from rich.markup import escape

from clipper.admin.connection import ClipperConnection
from clipper.admin.deployers.python import create_endpoint, deploy_python_closure
from clipper.admin.managers.local import LocalContainerManager
from clipper.admin.managers.process import SUPERVISOR_ROLE, is_alive, log_tail
from clipper.cli_tables import (
    addresses,
    apps_table,
    containers_table,
    models_table,
    policy_text,
    processes_table,
)
from clipper.errors import ClipperError
from clipper.selection import DEFAULT_POLICY
from clipper.top import ClusterViewClient, frame, read_once, run_live
from clipper.types import InputType

console = Console()
INPUT_TYPES = click.Choice([t.wire_name for t in InputType])


@dataclass
class CliState:
    """Global options, shared by every command."""

    cluster: str
    state_dir: Path | None
    debug: bool

    def manager(self, **ports: Any) -> LocalContainerManager:
        return LocalContainerManager(cluster_name=self.cluster, state_dir=self.state_dir, **ports)

    def connect(self) -> ClipperConnection:
        conn = ClipperConnection(self.manager())
        conn.connect()
        return conn


class CliError(click.ClickException):
    """One red line on stderr, exit status 1."""

    def show(self, file: Any = None) -> None:
        first, _, rest = self.message.partition("\n")
        err = Console(stderr=True, soft_wrap=True)
        err.print(f"[red]Error: {escape(first)}[/red]", highlight=False)
        if rest:
            err.print(rest, highlight=False, markup=False)


class ClipperGroup(click.Group):
    """Turns ClipperError and connection failures into one red line, unless --debug asks for the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ClipperError, requests.RequestException) as e:
            if isinstance(ctx.obj, CliState) and ctx.obj.debug:
                raise
            raise CliError(str(e)) from e


@click.group(cls=ClipperGroup)
@click.option("--cluster", default="default-cluster", show_default=True, help="Name of the local cluster.")
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Cluster state directory (default: $CLIPPER_HOME/clusters/<cluster>, CLIPPER_HOME=~/.clipper).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, cluster: str, state_dir: Path | None, debug: bool) -> None:
    """Clipper: low-latency prediction serving, compatible with Clipper 0.4.

    Start with `clipper quickstart`, which starts a local cluster and serves an example model.
    """
    ctx.obj = CliState(cluster, state_dir, debug)


pass_state = click.make_pass_decorator(CliState)


@cli.command()
@click.option(
    "--query-port",
    default=1337,
    show_default=True,
    help="HTTP port for predictions. For every port, 0 lets clipper pick a free one.",
)
@click.option("--management-port", default=1338, show_default=True, help="HTTP port of the management API.")
@click.option("--rpc-port", default=7000, show_default=True, help="Port model replicas connect to.")
@click.option("--redis-port", default=6379, show_default=True, help="Port of the cluster's Redis.")
@click.option("--redis-ip", default=None, help="Use a Redis already running at this address instead.")
@click.option("--cache-size", default=33554432, show_default=True, help="Prediction cache size in bytes.")
@click.option("--frontends", default=1, show_default=True, help="Query frontends sharing the query port.")
@click.option(
    "--no-auth",
    is_flag=True,
    help="Leave the management API open (for Clipper 0.4 admin clients, which send no token).",
)
@click.option(
    "--no-rpc-auth",
    is_flag=True,
    help="Accept model containers without the RPC token (for Clipper 0.4 containers).",
)
@click.option("--query-token", is_flag=True, help="Require a bearer token on predict requests too.")
@click.option(
    "--prometheus",
    is_flag=True,
    help="Also run a Prometheus server scraping every query frontend (needs a `prometheus` binary on PATH; "
    "without one the cluster starts and says so).",
)
@click.option("--prometheus-port", default=9090, show_default=True, help="HTTP port of that Prometheus.")
@pass_state
def start(
    state: CliState,
    query_port: int,
    management_port: int,
    rpc_port: int,
    redis_port: int,
    redis_ip: str | None,
    cache_size: int,
    frontends: int,
    no_auth: bool,
    no_rpc_auth: bool,
    query_token: bool,
    prometheus: bool,
    prometheus_port: int,
) -> None:
    """Start a local cluster.

    Redis, the management frontend and the query frontend keep running after this command exits.
    Tokens live in the cluster's state directory (`secrets/`, owner-only); every `clipper` command of
    this user finds them there.
    """
    manager = state.manager(
        clipper_query_port=query_port,
        clipper_management_port=management_port,
        clipper_rpc_port=rpc_port,
        redis_port=redis_port,
        redis_ip=redis_ip,
        admin_auth=not no_auth,
        rpc_auth=not no_rpc_auth,
        query_auth=query_token,
        start_prometheus=prometheus,
        prometheus_port=prometheus_port,
    )
    running = manager.live_records()
    if running:
        raise CliError(
            f"Cluster {state.cluster} is already running ({len(running)} processes); `clipper status` shows "
            "it, `clipper stop` stops it (add --purge to start the next one from nothing)"
        )
    with console.status(f"Starting cluster {state.cluster}..."):
        ClipperConnection(manager).start_clipper(cache_size=cache_size, num_frontend_replicas=frontends)
    console.print(f"[green]Cluster {state.cluster} is running[/green]")
    for (name, version), count in sorted(manager.resumed_replicas().items()):
        console.print(f"Resumed model {name}:{version} with {count} replica(s), as before the stop")
    console.print(addresses(manager))


@cli.command()
@click.option("--force", is_flag=True, help="Kill at once instead of asking processes to exit.")
@click.option(
    "--purge", is_flag=True, help="Also delete the cluster's state, so the next start begins from nothing."
)
@pass_state
def stop(state: CliState, force: bool, purge: bool) -> None:
    """Stop every process of the cluster.

    The state (apps, models, links, versions, replica counts) stays in the state directory and the next
    `clipper start` serves it again, unless --purge. A Redis given with `start --redis-ip` is left alone.
    """
    manager = state.manager()
    running = manager.live_records()
    manager.stop_all(graceful=not force, remove_state=purge)
    console.print(f"Stopped {len(running)} process(es) of cluster {state.cluster}")
    if purge:
        console.print(f"Removed its state ({manager.state_dir})")
    else:
        console.print(
            f"Its state (apps, models, links, versions, replica counts) is kept in {manager.state_dir}; "
            "the next `clipper start` resumes it. `clipper stop --purge` deletes it."
        )


@cli.command()
@pass_state
def status(state: CliState) -> None:
    """Show processes, apps, models and replicas."""
    manager = state.manager()
    records = manager.procs.records()
    if not records:
        console.print(f"Cluster {state.cluster} is not running (state in {manager.state_dir})")
        return
    console.print(processes_table(state.cluster, records))
    if not any(r.role == SUPERVISOR_ROLE and is_alive(r) for r in records):
        console.print(
            "[yellow]The supervisor was not running, so processes that died stayed down; "
            "connecting starts it again."
        )
    conn = state.connect()
    console.print(apps_table(conn))
    console.print(models_table(conn, manager))
    console.print(containers_table(conn))


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("function")
@click.option("--name", required=True, help="Model name (lower case letters, digits and '-').")
@click.option("--version", default=None, help="Model version (default: one more than the highest number).")
@click.option("--input-type", type=INPUT_TYPES, required=True, help="Type of each input.")
@click.option("--replicas", default=1, show_default=True, help="Number of replica processes.")
@click.option("--batch-size", default=-1, show_default=True, help="Largest batch; -1 = adaptive.")
@click.option("--label", "labels", multiple=True, help="Label for the model (repeatable).")
@click.option("--app", default=None, help="Also create (or reuse) this application and link the model to it.")
@click.option("--slo-micros", default=3000000, show_default=True, help="Latency objective of a new --app.")
@click.option("--default-output", default="None", show_default=True, help="Default output of a new --app.")
@pass_state
def deploy(
    state: CliState,
    file: Path,
    function: str,
    name: str,
    version: str | None,
    input_type: str,
    replicas: int,
    batch_size: int,
    labels: tuple[str, ...],
    app: str | None,
    slo_micros: int,
    default_output: str,
) -> None:
    """Deploy FUNCTION from a Python FILE as a model.

    FUNCTION takes a list of inputs and returns a list of strings, one per input.
    """
    try:
        func = runpy.run_path(str(file)).get(function)
    except Exception as e:  # the user's module: any error it raises is theirs to see, in one line
        raise CliError(f"{file} raised {type(e).__name__} while loading: {e}") from e
    if not callable(func):
        raise CliError(f"{file} defines no function named {function!r}")
    conn = state.connect()
    version = version or _next_version(conn, name)
    conn.check_new_version(name, version)
    new_app = app is not None and _check_app_fits(conn, app, name, input_type)
    with console.status(f"Deploying {name}:{version}..."):
        deploy_python_closure(
            conn,
            name,
            version,
            input_type,
            func,
            labels=list(labels),
            num_replicas=replicas,
            batch_size=batch_size,
        )
    console.print(f"[green]Deployed model {name}:{version}[/green] with {replicas} replica(s)")
    if app is None:
        return
    if new_app:
        conn.register_application(app, input_type, default_output, slo_micros)
    if name not in conn.get_linked_models(app):
        conn.link_model_to_app(app, name)
        console.print(f"Linked {name} to app {app}: POST http://{conn.get_query_addr()}/{app}/predict")


def _check_app_fits(conn: ClipperConnection, app: str, model: str, input_type: str) -> bool:
    """Refuse, before anything is deployed, an --app the model cannot be linked to; True if it is new."""
    info = conn.get_app_info(app)
    if info is None:
        return True
    if InputType.parse(info["input_type"]) is not InputType.parse(input_type):
        raise CliError(
            f"App {app} takes {info['input_type']} and model {model} would take {input_type}; "
            "deploy with the app's --input-type or choose another --app (nothing was deployed)"
        )
    linked = [m for m in info["linked_models"] if m != model]
    if linked and info.get("policy", DEFAULT_POLICY) == DEFAULT_POLICY:
        raise CliError(
            f"App {app} is linked to model {linked[0]} and an app has one model; unlink it first "
            f"(`clipper link {app} {linked[0]} --unlink`) or choose another --app (nothing was deployed)"
        )
    return False


def _next_version(conn: ClipperConnection, name: str) -> str:
    numbers = [
        int(v) for m in conn.get_all_models() for n, _, v in [m.partition(":")] if n == name and v.isdigit()
    ]
    return str(max(numbers, default=0) + 1)


@cli.command()
@click.argument("app")
@click.argument("data")
@pass_state
def predict(state: CliState, app: str, data: str) -> None:
    """Send DATA to APP and print the answer. DATA is a request ({"input": ...}) or just the input."""
    try:
        body = json.loads(data)
    except ValueError as e:
        raise CliError(f"DATA is not JSON: {e}") from e
    if not (isinstance(body, dict) and ("input" in body or "input_batch" in body)):
        body = {"input": body}
    conn = state.connect()
    token = conn.cm.get_query_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = requests.post(f"http://{conn.get_query_addr()}/{app}/predict", json=body, headers=headers, timeout=30)
    if r.status_code != 200:
        raise CliError(f"{r.status_code}: {r.text}")
    console.print_json(r.text)


@cli.command()
@click.argument("role", required=False)
@click.option("-n", "--lines", default=40, show_default=True, help="How many last lines to show per log.")
@pass_state
def logs(state: CliState, role: str | None, lines: int) -> None:
    """Show the end of the process logs.

    ROLE selects one process kind: query, management, redis, model-<name>-...
    """
    logs_dir = state.manager().procs.logs_dir
    paths = sorted(logs_dir.glob(f"{role}*.log" if role else "*.log")) if logs_dir.is_dir() else []
    if not paths:
        raise CliError(f"No log {'for ' + role + ' ' if role else ''}in {logs_dir}")
    for path in paths:
        console.rule(str(path))
        console.print(log_tail(str(path), lines), highlight=False, markup=False)


@cli.command()
@pass_state
def apps(state: CliState) -> None:
    """List the applications."""
    console.print(apps_table(state.connect()))


@cli.command()
@pass_state
def models(state: CliState) -> None:
    """List the model versions, with their replica counts."""
    conn = state.connect()
    console.print(models_table(conn, conn.cm))


@cli.command()
@pass_state
def containers(state: CliState) -> None:
    """List the connected model replicas."""
    console.print(containers_table(state.connect()))


@cli.command()
@click.argument("app")
@click.argument("model")
@click.option("--unlink", is_flag=True, help="Remove the link instead.")
@pass_state
def link(state: CliState, app: str, model: str, unlink: bool) -> None:
    """Link MODEL to APP, or unlink it.

    An app has one linked model, or several once it has a multi-model policy (`clipper policy`).
    """
    conn = state.connect()
    if unlink:
        conn.unlink_model_from_app(app, model)
        console.print(f"Unlinked {model} from {app}")
    else:
        conn.link_model_to_app(app, model)
        console.print(f"Linked {model} to {app}")


@cli.command()
@click.argument("app")
@click.argument("policy_name", metavar="[POLICY]", required=False)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A policy parameter (repeatable); VALUE is JSON or else a string, and a dotted KEY nests: "
    "--param weights.a=9 --param weights.b=1.",
)
@pass_state
def policy(state: CliState, app: str, policy_name: str | None, params: tuple[str, ...]) -> None:
    """Show APP's model-selection policy and weights, or set it to POLICY.

    POLICY: default (Clipper's: one model), split, shadow, exp3 or exp4. Setting another policy
    forgets what the previous one learned.
    """
    conn = state.connect()
    if policy_name is None:
        if params:
            raise CliError("--param needs a POLICY to set (e.g. `clipper policy APP split --param ...`)")
    else:
        name = DEFAULT_POLICY if policy_name == "default" else policy_name
        conn.set_app_policy(app, name, **_parse_params(params))
    console.print(policy_text(app, conn.get_app_policy(app)), highlight=False, markup=False)


def _parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """`KEY=VALUE` options as a params object: JSON values (else strings), dotted keys nested."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, eq, text = pair.partition("=")
        if not eq or not key:
            raise CliError(f"--param {pair!r}: expected KEY=VALUE, e.g. gamma=0.2 or weights.a=9")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        *parents, leaf = key.split(".")
        target = params
        for part in parents:
            nested = target.setdefault(part, {})
            if not isinstance(nested, dict):
                raise CliError(f"--param {pair!r}: {part} is already set to a value, not an object")
            target = nested
        target[leaf] = value
    return params


@cli.command("set-version")
@click.argument("model")
@click.argument("version")
@click.option("--replicas", type=int, default=None, help="Also resize that version's replica set.")
@pass_state
def set_version(state: CliState, model: str, version: str, replicas: int | None) -> None:
    """Make VERSION the current version of MODEL.

    Rolls forward or back; the app linked to MODEL then answers with VERSION.
    """
    state.connect().set_model_version(model, version, replicas)
    console.print(f"{model} now serves version {version}")


@cli.command()
@click.argument("model")
@click.argument("count", type=int, required=False)
@click.option("--version", default=None, help="Model version (default: the current one).")
@pass_state
def replicas(state: CliState, model: str, count: int | None, version: str | None) -> None:
    """Show MODEL's replica count, or set it to COUNT."""
    conn = state.connect()
    if count is not None:
        conn.set_num_replicas(model, count, version)
        if count > 0:
            with console.status(f"Waiting for {count} replica(s) of {model} to connect..."):
                conn.wait_for_model(model, version, count)
    console.print(f"{model}: {conn.get_num_replicas(model, version)} replica(s)")


@cli.command()
@click.argument("count", type=int, required=False)
@pass_state
def frontends(state: CliState, count: int | None) -> None:
    """Show the number of query frontends, or set it to COUNT.

    Frontends share the query port; model replicas join new ones and leave stopped ones without restarting.
    A stopped frontend first answers every query it holds.
    """
    conn = state.connect()
    if count is not None:
        with console.status(f"Scaling query frontends to {count}..."):
            conn.set_num_frontends(count)
    console.print(f"{conn.get_num_frontends()} query frontend(s)")


@cli.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option(
    "--once", is_flag=True, help="Print one frame and exit, for scripts (exit status 1 if unreadable)."
)
@pass_state
def top(state: CliState, interval: float, once: bool) -> None:
    """Show the cluster's live numbers, refreshed in place until Ctrl-C.

    Apps: requests/s, p50/p99 latency (red over the SLO), default answers/s by reason, cache hit ratio,
    linked models. Models (one row per version, * = current): replicas, predictions/s, mean batch size,
    queue length/bound, p99 latency, errors/s. Rates are summed over every live query frontend. While the
    management frontend cannot be read (stopped, or the token is refused), the header says so and
    `top` keeps trying; with --once that is one error line and exit status 1. The cluster is the one
    `clipper --cluster NAME` names, as for every command.
    """
    client = ClusterViewClient(state.manager())
    if once:
        console.print(frame(state.cluster, read_once(client, interval), None))
    else:
        run_live(client, state.cluster, interval, console)


def hello_model(inputs: list[Any]) -> list[str]:
    """The quickstart's model: the sum of each input's doubles."""
    return [str(float(sum(x))) for x in inputs]


@cli.command()
@pass_state
def quickstart(state: CliState) -> None:
    """Serve an example model as app `hello` and query it.

    Starts a local cluster (or reuses the running one) and deploys a model that sums doubles.
    """
    manager = state.manager()
    conn = ClipperConnection(manager)
    try:
        conn.connect()
        console.print(f"Using running cluster {state.cluster}")
    except ClipperError:
        with console.status(f"Starting cluster {state.cluster}..."):
            conn.start_clipper()
        console.print(f"[green]Started cluster {state.cluster}[/green]")
    with console.status("Deploying app hello..."):
        if conn.get_app_info("hello") is None:
            create_endpoint(conn, "hello", "doubles", hello_model, default_output="-1.0", slo_micros=1000000)
        elif not any(m.startswith("hello:") for m in conn.get_all_models()) or _replicas(conn, "hello") == 0:
            deploy_python_closure(conn, "hello", _next_version(conn, "hello"), "doubles", hello_model)
            if "hello" not in conn.get_linked_models("hello"):
                conn.link_model_to_app("hello", "hello")
    url = f"http://{conn.get_query_addr()}/hello/predict"
    answer = _predict_until_served(url, {"input": [1.0, 2.0, 3.0]})
    console.print(f"$ curl -X POST -d '{{\"input\": [1.0, 2.0, 3.0]}}' {url}", soft_wrap=True)
    console.print_json(json.dumps(answer))
    console.print(addresses(manager))
    console.print("Stop the cluster with `clipper stop`.")


def _replicas(conn: ClipperConnection, name: str) -> int:
    try:
        return conn.get_num_replicas(name)
    except ClipperError:
        return 0


def _predict_until_served(url: str, body: dict[str, Any], timeout_s: float = 30.0) -> Any:
    """POST until the model (not the default output) answers, so the first answer shown is real."""
    deadline = time.monotonic() + timeout_s
    while True:
        answer = requests.post(url, json=body, timeout=10).json()
        if not answer.get("default") or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


@cli.group()
def kubernetes() -> None:
    """Clusters on Kubernetes (KubernetesContainerManager); see docs/kubernetes.md."""


@kubernetes.command()
@click.option("--namespace", default="default", show_default=True)
@click.option(
    "--image", default=None, help="Runtime image of all roles [default: clipper/clipper:<version>]."
)
@click.option("--registry", default=None, help="Registry prefix of the default image.")
@click.option("--frontends", default=1, show_default=True, help="Query frontend replicas.")
@click.option(
    "--service-type",
    "service_types",
    multiple=True,
    metavar="KEY=TYPE",
    help="e.g. query=LoadBalancer; keys redis, management, query, query-rpc, metric.",
)
@click.option("--redis-ip", default=None, help="Use this Redis instead of a StatefulSet.")
@click.option("--redis-port", default=6379, show_default=True)
@click.option("--ephemeral-redis", is_flag=True, help="Redis data on an emptyDir (lost with its pod).")
@click.option("--storage-class", default=None, help="StorageClass of Redis's PersistentVolumeClaim.")
@click.option("--image-pull-secret", "pull_secrets", multiple=True)
@click.option("--create-namespace", is_flag=True, help="Include the Namespace object.")
@click.option("--no-secret", is_flag=True, help="Leave out the Secret (you create it yourself).")
@click.option("--no-auth", is_flag=True, help="Management API without a token.")
@click.option("--no-rpc-auth", is_flag=True, help="Model containers without the RPC token.")
@click.option("--query-token", is_flag=True, help="Require a bearer token on predict requests.")
@click.option("--model", "models", multiple=True, metavar="NAME:VERSION=IMAGE", help="A model version.")
@click.option("--model-input-type", type=INPUT_TYPES, default="doubles", show_default=True)
@click.option("--model-replicas", default=1, show_default=True)
@pass_state
def render(state: CliState, /, **o: Any) -> None:
    """Print every object of the cluster as YAML for `kubectl apply -f -` (fresh tokens in the Secret)."""
    from clipper.admin.managers import kube_manifests as km

    types = dict(t.partition("=")[::2] for t in o["service_types"])
    image = o["image"] or (f"{o['registry'].rstrip('/')}/{km.DEFAULT_IMAGE}" if o["registry"] else None)
    spec = km.ClusterSpec.build(
        name=state.cluster,
        namespace=o["namespace"],
        service_types=types,
        num_frontends=o["frontends"],
        redis_host=o["redis_ip"],
        redis_port=o["redis_port"],
        ephemeral_redis=o["ephemeral_redis"],
        storage_class=o["storage_class"],
        image_pull_secrets=o["pull_secrets"],
        admin_auth=not o["no_auth"],
        rpc_auth=not o["no_rpc_auth"],
        query_auth=o["query_token"],
        redis_password=o["redis_ip"] is None,
        **({"image": image} if image else {}),
    )
    models = []
    for m in o["models"]:
        key, _, model_image = m.partition("=")
        name, _, version = key.partition(":")
        models.append(
            km.ModelSpec.build(
                name=name,
                version=version,
                image=model_image,
                input_type=o["model_input_type"],
                replicas=o["model_replicas"],
            )
        )
    values = None if o["no_secret"] else km.secret_values(spec)
    click.echo(km.render(km.cluster_objects(spec, values, models, o["create_namespace"])), nl=False)


def main() -> None:
    """Entry point of the `clipper` command."""
    cli.main(prog_name="clipper")
