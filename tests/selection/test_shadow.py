"""The shadow policy: the primary answers, every other linked model is a shadow."""

from __future__ import annotations

import random

import pytest

from clipper.selection import NoFeedback, Plan, check_params, make_policy


def test_primary_answers_and_the_others_shadow() -> None:
    models = ("old", "new1", "new2")
    policy = make_policy("shadow", check_params("shadow", {"primary": "old"}, models))
    plan = policy.plan({}, models, "u1", random.Random(0))
    assert plan == Plan("old", shadows=("new1", "new2"))
    assert policy.weights({}, models) == {"old": 1.0, "new1": 0.0, "new2": 0.0}
    # a candidate linked later is shadowed from the next plan on
    assert policy.plan({}, (*models, "new3"), None, random.Random(0)).shadows == ("new1", "new2", "new3")


def test_unlinked_primary_gives_the_default_output_not_a_candidate() -> None:
    policy = make_policy("shadow", check_params("shadow", {"primary": "old"}, ("old", "new")))
    assert policy.plan({}, ("new",), None, random.Random(0)) == Plan(None, shadows=("new",))


def test_shadow_takes_no_feedback() -> None:
    policy = make_policy("shadow", {"primary": "a"})
    with pytest.raises(NoFeedback):
        policy.update({}, ("a", "b"), "a", {"a": 1.0})
