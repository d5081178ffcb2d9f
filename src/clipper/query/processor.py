"""QueryProcessor: app -> model version, cache, per-version queues, dispatch to replicas, default outputs.

Everything here runs on the event loop's thread; nothing blocks and nothing awaits on the query path:
`submit` enqueues and may send a batch at once, answers arrive through `response`, and the caller awaits
the request's future, which the SLO timer completes in every case.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from clipper.errors import InvalidInput, Overloaded, UnknownApp, UnknownVersion
from clipper.query.answers import (
    NO_MODEL_ANSWER,
    OVERLOAD_ANSWER,
    SLO_ANSWER,
    Answer,
    DefaultAnswer,
    PendingRequest,
    SloTimers,
)
from clipper.query.batching import AimdBatchSizer, DeadlineQueue
from clipper.query.cache import PredictionCache
from clipper.query.selecting import Ensemble, Selection, ShadowWatch, Waiter
from clipper.rpc import codec
from clipper.rpc.server import Replica, ReplicaGone, RpcListener
from clipper.types import InputType

logger = logging.getLogger(__name__)

LATENCY_EWMA_WEIGHT = 0.2


class Transport(Protocol):
    """How batches leave: the RPC server."""

    def send_predict(self, replica: Replica, msg_id: int, inputs: list[bytes]) -> None: ...


class ReplicaRecorder(Protocol):
    """Where replicas are recorded (the config store); assigns cluster-unique replica ids."""

    async def register(self, replica: Replica) -> int: ...

    def forget(self, replica: Replica) -> None: ...


class MetricsSink(Protocol):
    """The few numbers the core reports; frontends.metrics implements it with Prometheus."""

    def request_done(
        self, app: str, latency_s: float, n_queries: int, defaults: Sequence[DefaultAnswer]
    ) -> None: ...

    def batch_done(self, replica: Replica, size: int, latency_s: float, failed: bool) -> None: ...

    def replica_joined(self, replica: Replica) -> None: ...

    def replica_left(self, replica: Replica, lost_batch: bool) -> None: ...

    def cache_lookup(self, model: str, version: str, hit: bool) -> None: ...

    def rejected(self, app: str) -> None: ...

    def stray_answer(self, model: str, version: str) -> None: ...

    def chosen(self, app: str, model: str) -> None: ...

    def shadow_compared(self, app: str, model: str, agreed: bool) -> None: ...


@dataclass(slots=True)
class AppRoute:
    """An app as the query path needs it."""

    name: str
    input_type: InputType
    default_output: bytes
    slo_ns: int
    model: str | None = None
    default_on_overload: bool = False
    selection: Selection | None = None  # a multi-model policy; None: Clipper's one linked model
    input_shape: tuple[int, ...] | None = None  # declared shape of each input (numeric types); None: any


@dataclass(slots=True, eq=False)
class Query:
    """One input on its way to a model version; several requests may wait on it (identical inputs)."""

    input: bytes
    deadline_ns: int
    waiters: list[tuple[Waiter, int]]
    retried: bool = False


@dataclass(slots=True, eq=False)
class VersionState:
    """Queue, replicas and batch sizing of one model version on this frontend."""

    name: str
    version: str
    queue: DeadlineQueue[Query]
    sizer: AimdBatchSizer
    replicas: list[Replica] = field(default_factory=list)
    idle: collections.deque[Replica] = field(default_factory=collections.deque)  # longest idle first
    pending: dict[bytes, Query] = field(default_factory=dict)
    wake: asyncio.Handle | None = None
    latency_ns: float = 0.0  # moving average of send-to-answer time of a batch


@dataclass(slots=True, eq=False)
class InFlight:
    state: VersionState
    replica: Replica
    batch: list[Query]
    sent_ns: int


class QueryProcessor(RpcListener):
    """The query core of one frontend. Config arrives through the `set_*`/`remove_*` methods."""

    def __init__(
        self,
        transport: Transport | None,
        recorder: ReplicaRecorder,
        metrics: MetricsSink,
        loop: asyncio.AbstractEventLoop,
        *,
        cache_size_bytes: int,
        queue_max_entries: int,
        max_batch_size: int,
        batch_wait_ms: float = 0.0,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        """`loop` is the one the query path runs on (held: asyncio.get_running_loop() costs a getpid())."""
        self.transport = transport
        self._recorder = recorder
        self._metrics = metrics
        self._clock = clock
        self._queue_max = queue_max_entries
        self._max_batch = max_batch_size
        self._batch_wait_s = batch_wait_ms / 1000
        self.cache = PredictionCache(cache_size_bytes)
        self.apps: dict[str, AppRoute] = {}
        self.current_versions: dict[str, str] = {}
        self.model_batch_sizes: dict[tuple[str, str], int] = {}
        self.versions: dict[tuple[str, str], VersionState] = {}
        self._in_flight: dict[int, InFlight] = {}  # msg_id -> batch; one per busy replica
        self._msg_ids = itertools.count()
        self._next_query_id = 0
        self._loop = loop
        self._timers = SloTimers(loop, clock)

    # --- configuration (called by the config follower) --------------------------------------

    def set_app(self, route: AppRoute) -> None:
        self.apps[route.name] = route

    def remove_app(self, name: str) -> None:
        self.apps.pop(name, None)

    def set_current_version(self, model: str, version: str | None) -> None:
        if version is None:
            self.current_versions.pop(model, None)
        else:
            self.current_versions[model] = version

    def set_model(self, name: str, version: str, batch_size: int) -> None:
        """A model version exists or changed; its cached outputs go, so a redeployment is never stale."""
        key = (name, version)
        self.model_batch_sizes[key] = batch_size
        self.cache.invalidate(name, version)
        state = self.versions.get(key)
        if state is not None:
            state.sizer = self._sizer(batch_size)

    def remove_model(self, name: str, version: str) -> None:
        self.model_batch_sizes.pop((name, version), None)
        self.cache.invalidate(name, version)

    def _sizer(self, batch_size: int) -> AimdBatchSizer:
        if batch_size > 0:
            return AimdBatchSizer(batch_size, fixed=True)
        return AimdBatchSizer(self._max_batch)

    def _state(self, name: str, version: str) -> VersionState:
        key = (name, version)
        state = self.versions.get(key)
        if state is None:
            state = VersionState(
                name,
                version,
                DeadlineQueue(self._queue_max),
                self._sizer(self.model_batch_sizes.get(key, -1)),
            )
            self.versions[key] = state
        return state

    # --- the query path ---------------------------------------------------------------------

    def route(self, app_name: str) -> AppRoute:
        route = self.apps.get(app_name)
        if route is None:
            raise UnknownApp(f"No application named '{app_name}'")
        return route

    def submit(
        self,
        route: AppRoute,
        inputs: list[bytes],
        version: str | None,
        on_done: Callable[[PendingRequest], None],
        uid: str | None = None,
    ) -> None:
        """Start answering `inputs` for an app; `on_done` runs by the deadline at the latest, maybe at once.

        Raises InvalidInput, UnknownVersion or Overloaded (then `on_done` never runs).
        """
        if route.selection is not None:
            self._submit_selected(route, route.selection, inputs, version, on_done, uid)
            return
        model = route.model
        if version is not None:
            if model is None:
                raise InvalidInput(
                    f"version '{version}' requested but no model is linked to app '{route.name}'"
                )
            if (model, version) not in self.model_batch_sizes:
                raise UnknownVersion(f"Requested version: {version} does not exist for model: {model}")
        elif model is not None:
            version = self.current_versions.get(model)
        state = self.versions.get((model, version)) if model is not None and version is not None else None
        if state is not None and not route.default_on_overload:
            queue = state.queue
            if len(queue) + len(inputs) > queue.max_entries:  # all or nothing: no half-queued request
                raise Overloaded(f"queue full ({queue.max_entries} queries waiting)")
        first_id = self._next_query_id  # Clipper's query_id: one per input, counted per frontend
        self._next_query_id += len(inputs)
        request = PendingRequest(len(inputs), route.default_output, first_id, on_done)
        if state is None or not state.replicas:
            for i in range(len(inputs)):
                request.resolve(i, NO_MODEL_ANSWER)
            return
        now = self._clock()
        deadline = now + route.slo_ns
        for i, data in enumerate(inputs):
            self._enqueue(state, data, now, deadline, request, i)
        if request.remaining:
            self._timers.add(route.slo_ns, deadline, request)
            self._wake(state)

    def _enqueue(
        self, state: VersionState, data: bytes, now: int, deadline: int, waiter: Waiter, index: int
    ) -> None:
        """Answer from the cache, join an identical query in flight, or queue a new one."""
        cache = self.cache
        if cache.enabled:
            hit = cache.get((state.name, state.version, data))
            self._metrics.cache_lookup(state.name, state.version, hit is not None)
            if hit is not None:
                waiter.resolve(index, hit)
                return
            shared = state.pending.get(data)
            # A query past its own deadline may sit on a replica that never answers: a later request
            # for the same input gets a query of its own (and takes the pending slot) instead.
            if shared is not None and shared.deadline_ns >= now:
                shared.waiters.append((waiter, index))
                return
        query = Query(data, deadline, [(waiter, index)])
        try:
            state.queue.push(deadline, query)
        except Overloaded:  # only apps that answer overload with the default get here (see submit)
            waiter.resolve(index, OVERLOAD_ANSWER)
            return
        if cache.enabled:
            state.pending[data] = query

    def serving(self, model: str, version: str | None = None) -> VersionState | None:
        """The state of the model's `version` (None: its current one), if that has replicas here."""
        state = self.versions.get((model, version or self.current_versions.get(model, "")))
        return state if state is not None and state.replicas else None

    def _submit_selected(
        self,
        route: AppRoute,
        sel: Selection,
        inputs: list[bytes],
        version: str | None,
        on_done: Callable[[PendingRequest], None],
        uid: str | None,
    ) -> None:
        """The policy plans each input (one model, one plus shadows, or an ensemble); all or nothing."""
        if version is not None:
            raise InvalidInput(
                f"version '{version}' requested, but app '{route.name}' selects among "
                f"{len(sel.models)} models ({sel.policy.name}); versions are pinned per model"
            )
        n = len(inputs)
        if not route.default_on_overload:  # room for every input on every model it may go to
            for linked in sel.models:
                vs = self.serving(linked)
                if vs is not None and len(vs.queue) + n * sel.fanout > vs.queue.max_entries:
                    raise Overloaded(f"queue of model {linked} full ({vs.queue.max_entries} queries waiting)")
        policy, models, rng, metrics, app = sel.policy, sel.models, sel.rng, self._metrics, route.name
        state_of = sel.state_for(uid)
        first_id = self._next_query_id
        self._next_query_id += n
        request = PendingRequest(n, route.default_output, first_id, on_done)
        now = self._clock()
        deadline = now + route.slo_ns
        woken: set[VersionState] = set()
        for i, data in enumerate(inputs):
            plan = policy.plan(state_of, models, uid, rng)
            if plan.ensemble:
                if request.fallbacks is None:
                    request.fallbacks = [None] * n
                ensemble = Ensemble(plan.ensemble, partial(policy.combine, state_of, models), request, i)
                request.fallbacks[i] = ensemble.partial
                for j, member in enumerate(plan.ensemble):
                    metrics.chosen(app, member)
                    self._ask_one(member, data, now, deadline, ensemble, j, woken)
                continue
            model = plan.answer_from
            if model is None:
                request.resolve(i, NO_MODEL_ANSWER)
                continue
            metrics.chosen(app, model)
            if policy.takes_feedback:
                sel.remember_choice(uid, data, model)
            self._ask_one(model, data, now, deadline, request, i, woken)
            if plan.shadows:
                watch = ShadowWatch(plan.shadows, partial(metrics.shadow_compared, app))
                self._ask_one(model, data, now, deadline, watch, 0, woken)
                for j, shadow in enumerate(plan.shadows, 1):
                    self._ask_one(shadow, data, now, deadline, watch, j, woken)
        if request.remaining:
            self._timers.add(route.slo_ns, deadline, request)
        for vs in woken:
            self._wake(vs)

    def _ask_one(
        self,
        model: str,
        data: bytes,
        now: int,
        deadline: int,
        waiter: Waiter,
        index: int,
        woken: set[VersionState],
    ) -> None:
        """One input to one model's current version, for a selection policy; no replica: no-model answer."""
        vs = self.serving(model)
        if vs is None:
            waiter.resolve(index, NO_MODEL_ANSWER)
            return
        self._enqueue(vs, data, now, deadline, waiter, index)
        woken.add(vs)

    def ask(self, model: str, data: bytes, timeout_ns: int) -> asyncio.Future[Answer]:
        """One input asked of a model's current version, off the client path (feedback); answered by
        `timeout_ns` at the latest, with the default answer then."""
        future: asyncio.Future[Answer] = self._loop.create_future()
        waiter = _FutureWaiter(future)
        vs = self.serving(model)
        if vs is None:
            future.set_result(NO_MODEL_ANSWER)
            return future
        now = self._clock()
        self._enqueue(vs, data, now, now + timeout_ns, waiter, 0)
        self._wake(vs)
        self._loop.call_later(timeout_ns / 1e9, waiter.resolve, 0, SLO_ANSWER)
        return future

    def set_selection_state(self, app: str, uid: str, state: dict[str, Any] | None) -> None:
        """A policy's state changed in the store (feedback here or on another frontend); None: forgotten."""
        route = self.apps.get(app)
        if route is not None and route.selection is not None:
            route.selection.set_state(uid, state)

    def selection_weights(self) -> list[tuple[str, str, float]]:
        """(app, model, weight or probability) of every multi-model app's global state, for metrics."""
        out = []
        for route in self.apps.values():
            sel = route.selection
            if sel is not None:
                for model, weight in sel.policy.weights(sel.state, sel.models).items():
                    out.append((route.name, model, weight))
        return out

    def _wake(self, state: VersionState) -> None:
        """Dispatch after this loop iteration has queued all it received: bigger batches, fewer sends.

        With `batch_wait_ms`, a batch short of the limit waits that long for more queries first.
        """
        if state.wake is not None:
            return
        loop = self._loop
        if self._batch_wait_s and len(state.queue) < state.sizer.limit:
            state.wake = loop.call_later(self._batch_wait_s, self._woken, state)
        else:
            state.wake = loop.call_soon(self._woken, state)

    def _woken(self, state: VersionState) -> None:
        state.wake = None
        self._dispatch(state)

    def _dispatch(self, state: VersionState) -> None:
        """Give queued queries to idle replicas, one batch each, up to the adaptive limit."""
        queue = state.queue
        while state.idle and len(queue):
            now = self._clock()
            # A query that cannot be answered before its deadline is answered now with the default
            # output instead of costing model time: under overload this keeps the model on queries
            # that can still make it, where plain earliest-deadline-first would serve only late ones.
            horizon = now + int(state.latency_ns)
            batch = queue.take(state.sizer.limit, now, horizon, lambda q: self._finish(state, q, SLO_ANSWER))
            if not batch:
                break
            replica = state.idle.popleft()  # round robin: a newly connected replica does not take all work
            msg_id = next(self._msg_ids) & 0xFFFFFFFF
            try:
                assert self.transport is not None
                self.transport.send_predict(replica, msg_id, [q.input for q in batch])
            except ReplicaGone:
                for q in batch:
                    queue.push_front(q.deadline_ns, q)
                continue  # replica_removed has already dropped it
            self._in_flight[msg_id] = InFlight(state, replica, batch, now)

    def _finish(self, state: VersionState, query: Query, answer: bytes | DefaultAnswer) -> None:
        # `pending` is only filled with the cache on; without it the lookup would hash every input once
        # more (bytes hash themselves on first use: ~1 us for 784 doubles), just to find nothing.
        pending = state.pending
        if pending and pending.get(query.input) is query:
            del pending[query.input]
        for request, index in query.waiters:
            request.resolve(index, answer)

    # --- RPC events -------------------------------------------------------------------------

    async def replica_added(self, replica: Replica) -> None:
        replica.replica_id = await self._recorder.register(replica)
        self._metrics.replica_joined(replica)
        state = self._state(replica.model_name, replica.model_version)
        state.replicas.append(replica)
        state.idle.append(replica)
        self._dispatch(state)

    def replica_removed(self, replica: Replica) -> None:
        self._recorder.forget(replica)
        msg_id = next((m for m, f in self._in_flight.items() if f.replica is replica), None)
        flight = self._in_flight.pop(msg_id) if msg_id is not None else None
        self._metrics.replica_left(replica, lost_batch=flight is not None)
        state = self.versions.get(replica.model_key)
        if state is None:
            return
        if replica in state.replicas:
            state.replicas.remove(replica)
        if replica in state.idle:
            state.idle.remove(replica)
        now = self._clock()
        gone = DefaultAnswer(
            f"Model container {replica.model_name}:{replica.model_version} disconnected", "disconnected"
        )
        if flight is not None:
            for query in flight.batch:
                if state.replicas and not query.retried and query.deadline_ns > now:
                    query.retried = True  # once, on another replica of the same version
                    state.queue.push_front(query.deadline_ns, query)
                else:
                    self._finish(state, query, gone)
        if not state.replicas:
            for query in state.queue.drain():
                self._finish(state, query, gone)
        self._dispatch(state)

    def response(self, replica: Replica, msg: codec.PredictResponse | codec.ContainerError) -> None:
        flight = self._in_flight.get(msg.msg_id)
        if flight is None or flight.replica is not replica:
            # Not an answer to a batch this replica holds (message ids are one counter for every
            # replica): another container's batch stays its own, and the stray is only counted.
            self._metrics.stray_answer(replica.model_name, replica.model_version)
            return
        del self._in_flight[msg.msg_id]
        state, batch = flight.state, flight.batch
        now = self._clock()
        state.sizer.observe(len(batch), all(q.deadline_ns >= now for q in batch))
        state.latency_ns += LATENCY_EWMA_WEIGHT * ((now - flight.sent_ns) - state.latency_ns)
        if replica in state.replicas:
            state.idle.append(replica)
        # Whichever side is the bottleneck goes first. With more than a batch waiting, the model is
        # behind: its next batch leaves before this one's answers (a system call each to write). Else
        # this frontend is the bottleneck, and answering first gets clients their next requests in sooner.
        # Measured on 2 cores: +50% at batch size 1 for the first order, +20% adaptive for the second.
        model_behind = len(state.queue) > state.sizer.limit
        if model_behind:
            self._dispatch(state)
        if isinstance(msg, codec.PredictResponse) and len(msg.outputs) == len(batch):
            failed = False
            cache = self.cache
            for query, output in zip(batch, msg.outputs, strict=True):
                if cache.enabled:
                    cache.put((state.name, state.version, query.input), output)
                self._finish(state, query, output)
        else:
            reason = (
                msg.message
                if isinstance(msg, codec.ContainerError)
                else (f"model returned {len(msg.outputs)} outputs for {len(batch)} inputs")
            )
            failed = True
            error = DefaultAnswer(f"Model {state.name}:{state.version} failed: {reason}", "model_error")
            for query in batch:
                self._finish(state, query, error)
        self._metrics.batch_done(replica, len(batch), (now - flight.sent_ns) / 1e9, failed)
        if not model_behind:
            self._dispatch(state)

    def missing_replicas(self, wanted: set[tuple[str, str]]) -> list[tuple[str, str]]:
        """Of `wanted` (model, version) pairs, those that serve a linked app here but have no replica here."""
        linked = {a.model for a in self.apps.values()} | {
            m for a in self.apps.values() if a.selection is not None for m in a.selection.models
        }
        serving = {(m, self.current_versions.get(m)) for m in linked if m}
        return sorted(k for k in wanted & serving if not (k in self.versions and self.versions[k].replicas))

    def queue_lengths(self) -> list[tuple[str, str, int, int]]:
        """(model, version, queued queries, most it may hold) for every version this frontend serves."""
        return [(s.name, s.version, len(s.queue), self._queue_max) for s in self.versions.values()]

    def shutdown(self) -> None:
        """Answer everything still held with the default output (used when the frontend stops)."""
        for state in self.versions.values():
            for query in state.queue.drain():
                self._finish(state, query, SLO_ANSWER)
        for flight in self._in_flight.values():
            for query in flight.batch:
                self._finish(flight.state, query, SLO_ANSWER)
        self._in_flight.clear()


class _FutureWaiter:
    """Hands the first answer of a query to a future (feedback awaits a model's prediction)."""

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[Answer]) -> None:
        self._future = future

    def resolve(self, index: int, answer: Answer) -> None:
        if not self._future.done():
            self._future.set_result(answer)
