"""The default policy: Clipper's one linked model, no state, no feedback."""

from __future__ import annotations

import random

import pytest

from clipper.errors import ClipperError
from clipper.selection import DEFAULT_POLICY, NoFeedback, Plan, make_policy


def test_the_one_linked_model_answers() -> None:
    policy = make_policy(DEFAULT_POLICY, {})
    rng = random.Random(0)
    assert policy.plan({}, ("m",), None, rng) == Plan("m")
    assert policy.plan({}, ["m"], "7", rng) == Plan("m")
    assert policy.plan({}, (), None, rng) == Plan(None)  # no linked model: the default output
    assert policy.weights({}, ("m",)) == {"m": 1.0}


def test_feedback_is_refused_as_a_clipper_error() -> None:
    policy = make_policy(DEFAULT_POLICY, {})
    with pytest.raises(NoFeedback, match="takes no feedback") as err:
        policy.update({}, ("m",), "m", {"m": 1.0})
    assert isinstance(err.value, ClipperError)
