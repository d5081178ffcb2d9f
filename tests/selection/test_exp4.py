"""Exp4 ensemble: weighted vote and mean, the confidence threshold, partial answers, learned weights."""

from __future__ import annotations

import math
import random

import pytest

from clipper.selection import Combined, Plan, Policy, check_params, make_policy

MODELS = ("m1", "m2", "m3")
STATE = {"weights": {"m1": 0.5, "m2": 0.3, "m3": 0.2}}


def _exp4(**params: object) -> Policy:
    return make_policy("exp4", check_params("exp4", dict(params), MODELS))


def test_plans_every_linked_model_as_one_ensemble() -> None:
    policy = _exp4()
    assert policy.plan(STATE, MODELS, "u", random.Random(0)) == Plan(None, ensemble=MODELS)
    assert policy.plan(STATE, (), None, random.Random(0)) == Plan(None)


def test_weighted_vote_on_labels() -> None:
    policy = _exp4()
    # m2 and m3 (0.5 together) tie m1 (0.5): the first model in link order wins a tie
    assert policy.combine(STATE, MODELS, {"m1": b"cat", "m2": b"dog", "m3": b"dog"}) == Combined(b"cat", None)
    heavier = {"weights": {"m1": 0.4, "m2": 0.3, "m3": 0.3}}
    assert policy.combine(heavier, MODELS, {"m1": b"cat", "m2": b"dog", "m3": b"dog\n"}).output == b"dog"


def test_weighted_mean_on_numbers() -> None:
    policy = _exp4()
    combined = policy.combine(STATE, MODELS, {"m1": b"1.0", "m2": b"2", "m3": b"4"})
    assert combined.explanation is None
    assert float(combined.output or b"nan") == pytest.approx(0.5 * 1 + 0.3 * 2 + 0.2 * 4)
    assert policy.combine(STATE, MODELS, {"m1": b"3", "m2": b"3", "m3": b"3.0"}).output == b"3"


def test_numbers_are_voted_on_when_asked() -> None:
    policy = _exp4(combine="vote")  # class labels 0/1 must not be averaged to 0.6
    assert policy.combine(STATE, MODELS, {"m1": b"1", "m2": b"0", "m3": b"1"}).output == b"1"


def test_mixed_outputs_are_voted_on() -> None:
    policy = _exp4()
    assert policy.combine(STATE, MODELS, {"m1": b"7", "m2": b"seven", "m3": b"seven"}).output == b"7"


def test_below_the_confidence_the_default_output_answers() -> None:
    policy = _exp4(confidence=0.6)
    combined = policy.combine(STATE, MODELS, {"m1": b"cat", "m2": b"dog", "m3": b"bird"})
    assert combined.output is None
    assert (
        combined.explanation
        == "models disagree: the top answer has 50% of the weight, below the confidence 60%"
    )
    agreed = policy.combine(STATE, MODELS, {"m1": b"cat", "m2": b"cat", "m3": b"bird"})
    assert agreed == Combined(b"cat", None)


def test_numbers_confidence_is_the_weight_within_tolerance_of_the_mean() -> None:
    policy = _exp4(confidence=0.9, tolerance=0.1)
    close = policy.combine(STATE, MODELS, {"m1": b"100", "m2": b"104", "m3": b"97"})
    assert close.output is not None
    apart = policy.combine(STATE, MODELS, {"m1": b"100", "m2": b"104", "m3": b"300"})
    assert apart.output is None
    assert apart.explanation == (  # 0.5 * 100 + 0.3 * 104 + 0.2 * 300; no model within 10% of it
        "models disagree: the weighted mean 141.2 has 0% of the weight, below the confidence 90%"
    )


def test_partial_answers_still_combine_and_say_so() -> None:
    policy = _exp4()
    combined = policy.combine(STATE, MODELS, {"m1": b"cat", "m2": b"dog"})
    assert combined == Combined(b"cat", "combined 2 of 3 models; no answer from m3")
    unsure = _exp4(confidence=0.9).combine(STATE, MODELS, {"m2": b"dog", "m3": b"cat"})
    assert unsure.output is None
    assert unsure.explanation is not None and unsure.explanation.endswith(
        "combined 2 of 3 models; no answer from m1"
    )
    assert policy.combine(STATE, MODELS, {}) == Combined(None, "no model answered")


def test_update_is_multiplicative_weights() -> None:
    policy = _exp4(eta=0.5)
    new = policy.update(STATE, MODELS, None, {"m1": 0.0, "m2": 1.0})
    m1, m2, m3 = 0.5 * math.exp(-0.5), 0.3, 0.2
    total = m1 + m2 + m3
    assert new["weights"] == pytest.approx({"m1": m1 / total, "m2": m2 / total, "m3": m3 / total})
    with pytest.raises(ValueError, match=r"^rewards\.m2:"):
        policy.update(STATE, MODELS, None, {"m2": -0.5})


def test_weights_move_toward_the_accurate_model_and_the_ensemble_is_as_accurate() -> None:
    accuracy = {"m1": 0.5, "m2": 0.7, "m3": 0.9}
    labels = [f"class-{i}" for i in range(10)]  # not numbers: digits would be averaged unless combine="vote"
    policy = _exp4()
    state = policy.initial_state(MODELS)
    rng = random.Random(11)
    right = {"ensemble": 0, **dict.fromkeys(MODELS, 0)}
    for n in range(600):
        label = rng.choice(labels)
        answers = {
            m: (
                label if rng.random() < accuracy[m] else rng.choice([x for x in labels if x != label])
            ).encode()
            for m in MODELS
        }
        output = policy.combine(state, MODELS, answers).output
        if n >= 100:  # scored after 100 rounds of feedback
            right["ensemble"] += output == label.encode()
            for m in MODELS:
                right[m] += answers[m] == label.encode()
        rewards = {m: 1.0 if answers[m] == label.encode() else 0.0 for m in MODELS}
        state = policy.update(state, MODELS, None, rewards)
    weights = policy.weights(state, MODELS)
    assert weights["m3"] > 0.99  # the others sit at the floor, from where they could come back
    assert right["ensemble"] >= right["m3"]
