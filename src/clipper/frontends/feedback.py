"""`POST /<app>/update`: a label for an input becomes a reward per model and one atomic policy update.

Clipper's request schema (reference §2.7): `uid` (an integer; a string is accepted too), `input` (one
input, as in predict) and `label` (a number, or a string label). Each linked model's prediction for the
input comes from the cache, or the model is asked again within the app's SLO (a model that cannot answer
in time gets no reward, as it would serve no answer); the policy's state in the config store is then
updated in one read-modify-write, which every frontend follows.
"""

from __future__ import annotations

import asyncio
from typing import Any

from clipper.config.store import ConfigStore
from clipper.errors import InvalidInput, Overloaded
from clipper.frontends.metrics import QueryMetrics
from clipper.query.answers import Explained
from clipper.query.inputs import encode_input, load_json, parse_uid
from clipper.query.processor import QueryProcessor
from clipper.query.selecting import GLOBAL_UID
from clipper.selection import NoFeedback, reward
from clipper.types import InputType


class FeedbackHandler:
    """Turns feedback into policy updates; off the query path (it awaits models and Redis)."""

    def __init__(self, processor: QueryProcessor, store: ConfigStore, metrics: QueryMetrics) -> None:
        self._processor = processor
        self._store = store
        self._metrics = metrics

    async def update(self, app_name: str, raw: bytes) -> dict[str, Any]:
        """Apply one feedback; the reply names the rewards. Raises UnknownApp, InvalidInput, NoFeedback."""
        route = self._processor.route(app_name)
        sel = route.selection
        if sel is None or not sel.policy.takes_feedback:
            name = sel.policy.name if sel is not None else "default"
            raise NoFeedback(
                f"app '{app_name}' uses the {name} policy, which takes no feedback; "
                "set exp3 or exp4 (set_app_policy) to learn from it"
            )
        uid, data, label = _parse(raw, route.input_type, route.input_shape)
        models = sel.models
        answers = await asyncio.gather(*(self._processor.ask(model, data, route.slo_ns) for model in models))
        rewards: dict[str, float] = {}
        for model, answer in zip(models, answers, strict=True):
            output = answer.output if isinstance(answer, Explained) else answer
            if isinstance(output, bytes):
                rewards[model] = reward(output, label, sel.params)
        if not rewards:
            raise Overloaded(f"no model of app '{app_name}' answered the input in time; feedback not applied")
        policy, chosen = sel.policy, sel.choice(uid, data)
        key = uid if policy.per_user else GLOBAL_UID
        state = await self._store.update_selection_state(
            app_name,
            key,
            lambda old: policy.update(old or policy.initial_state(models), models, chosen, rewards),
        )
        self._processor.set_selection_state(app_name, key, state)
        for model, value in rewards.items():
            self._metrics.feedback(app_name, model, value)
        return {"app": app_name, "uid": uid, "rewards": rewards}


def _parse(
    raw: bytes, input_type: InputType, shape: tuple[int, ...] | None
) -> tuple[str, bytes, float | str]:
    """(uid, the input as container bytes, label) of an update body; InvalidInput names the field.

    The input is encoded as predict encodes it (nested to the app's `input_shape` or flat), so feedback finds
    the same cached answers and remembered choices as the prediction it labels.
    """
    body = load_json(raw)
    if not isinstance(body, dict):
        raise InvalidInput("Request body must be a JSON object with uid, input and label")
    for key in ("uid", "input", "label"):
        if key not in body:
            raise InvalidInput(f"JSON object does not have required key: {key}")
    uid, label = parse_uid(body["uid"]), body["label"]
    if isinstance(label, bool) or not isinstance(label, int | float | str):
        raise InvalidInput("Type mismatch! JSON key label expected type Number (or String)")
    if uid is None:
        raise InvalidInput("Type mismatch! JSON key uid expected type Integer (or String)")
    return uid, encode_input(body["input"], input_type, "input", shape=shape), label
