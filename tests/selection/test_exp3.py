"""Exp3: learns the best of three simulated models from feedback, and recovers from what it learned."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from clipper.selection import Policy, check_params, make_policy
from clipper.selection.base import WEIGHT_FLOOR

MODELS = ("a", "b", "c")
TRUTH = {"a": 0.5, "b": 0.7, "c": 0.9}  # chance that each model's answer is right (reward 1, else 0)
LEARN_ROUNDS = 1_000
WINDOW = 1_000


def _exp3(**params: object) -> Policy:
    return make_policy("exp3", check_params("exp3", dict(params), MODELS))


def _rounds(
    policy: Policy, state: dict[str, Any], rng: random.Random, n: int, truth: dict[str, float], best: str
) -> tuple[dict[str, Any], float]:
    """Plan, reward and update n times; the state after, and the share of plans that went to `best`."""
    hits = 0
    for _ in range(n):
        chosen = policy.plan(state, MODELS, None, rng).answer_from
        assert chosen is not None
        hits += chosen == best
        r = 1.0 if rng.random() < truth[chosen] else 0.0
        state = policy.update(state, MODELS, chosen, {chosen: r})
    return state, hits / n


@pytest.mark.parametrize("seed", range(5))
def test_sends_80_percent_to_the_best_after_1000_rounds(seed: int) -> None:
    policy = _exp3()
    rng = random.Random(seed)
    state, _ = _rounds(policy, policy.initial_state(MODELS), rng, LEARN_ROUNDS, TRUTH, "c")
    state, share = _rounds(policy, state, rng, WINDOW, TRUTH, "c")
    assert share >= 0.8
    assert max(policy.weights(state, MODELS).items(), key=lambda kv: kv[1])[0] == "c"


def test_probabilities_are_exp3s() -> None:
    policy = _exp3(gamma=0.3)
    state = {"weights": {"a": 0.5, "b": 0.25, "c": 0.25}}
    assert policy.weights(state, MODELS) == pytest.approx({"a": 0.7 * 0.5 + 0.1, "b": 0.275, "c": 0.275})
    # importance-weighted update of the chosen arm only: x = r / p, w *= exp(gamma x / K)
    new = policy.update(state, MODELS, "b", {"b": 0.5})
    grown = 0.25 * math.exp(0.3 * (0.5 / 0.275) / 3)
    total = 0.5 + grown + 0.25
    assert new["weights"] == pytest.approx({"a": 0.5 / total, "b": grown / total, "c": 0.25 / total})
    assert state == {"weights": {"a": 0.5, "b": 0.25, "c": 0.25}}  # the old state is a value, unchanged


def test_recovers_from_one_huge_importance_weighted_reward_on_the_worst_arm() -> None:
    policy = _exp3()
    rng = random.Random(7)
    state, _ = _rounds(policy, policy.initial_state(MODELS), rng, LEARN_ROUNDS, TRUTH, "c")
    p_worst = policy.weights(state, MODELS)["a"]
    assert p_worst < 0.05  # so a reward of 1 on it is weighted by 1 / p_worst > 20
    before = state["weights"]["a"]
    state = policy.update(state, MODELS, "a", {"a": 1.0})
    assert state["weights"]["a"] <= before * math.e * 1.01  # one observation moves a weight at most e-fold
    state, share = _rounds(policy, state, rng, 500, TRUTH, "c")
    assert share >= 0.8


def test_recovers_when_the_best_model_changes_after_long_convergence() -> None:
    # 20,000 rounds would push the others' weights to ~e^-400 without the floor; with it they can come back
    policy = _exp3()
    rng = random.Random(3)
    state, _ = _rounds(policy, policy.initial_state(MODELS), rng, 20_000, TRUTH, "c")
    assert min(state["weights"].values()) >= WEIGHT_FLOOR * 0.99
    flipped = {"a": 0.9, "b": 0.7, "c": 0.5}
    state, _ = _rounds(policy, state, rng, 2_000, flipped, "a")
    _, share = _rounds(policy, state, rng, WINDOW, flipped, "a")
    assert share >= 0.8


def test_update_refuses_a_reward_outside_0_1() -> None:
    policy = _exp3()
    with pytest.raises(ValueError, match=r"^rewards\.a: must be a number in \[0, 1\], got 50"):
        policy.update(policy.initial_state(MODELS), MODELS, "a", {"a": 50})
    with pytest.raises(ValueError, match=r"^rewards\.a:"):
        policy.update(policy.initial_state(MODELS), MODELS, "a", {"a": math.nan})


def test_update_without_a_chosen_linked_model_keeps_the_state() -> None:
    policy = _exp3()
    state = policy.initial_state(MODELS)
    assert policy.update(state, MODELS, None, {}) == state  # the default output answered
    assert policy.update(state, MODELS, "gone", {"gone": 1.0}) == state


def test_a_model_linked_later_starts_at_the_mean_weight_and_can_be_chosen() -> None:
    policy = _exp3()
    state = policy.initial_state(("a", "b"))
    models = ("a", "b", "c")
    assert policy.weights(state, models) == pytest.approx(dict.fromkeys(models, 1 / 3))
    rng = random.Random(0)
    assert {policy.plan(state, models, None, rng).answer_from for _ in range(200)} == set(models)
    assert set(policy.update(state, models, "c", {"c": 1.0})["weights"]) == set(models)


def test_plan_follows_a_new_state_object() -> None:
    policy = _exp3(gamma=0.01)
    rng = random.Random(0)
    on_a = {"weights": {"a": 1.0, "b": 0.0, "c": 0.0}}
    on_c = {"weights": {"a": 0.0, "b": 0.0, "c": 1.0}}
    assert sum(policy.plan(on_a, MODELS, None, rng).answer_from == "a" for _ in range(100)) > 90
    assert sum(policy.plan(on_c, MODELS, None, rng).answer_from == "c" for _ in range(100)) > 90
