"""The split policy: traffic shares by weight, sticky per uid across rngs and frontends."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from clipper.selection import NoFeedback, Policy, check_params, make_policy
from clipper.selection.split import uid_point

MODELS = ("stable", "canary")


def _split(weights: dict[str, float], models: tuple[str, ...] = MODELS) -> Policy:
    return make_policy("split", check_params("split", {"weights": weights}, models))


def test_90_10_over_10000_draws_lands_within_2_percent() -> None:
    policy = _split({"stable": 90, "canary": 10})
    rng = random.Random(1234)
    counts = Counter(policy.plan({}, MODELS, None, rng).answer_from for _ in range(10_000))
    assert set(counts) == set(MODELS)
    assert abs(counts["stable"] / 10_000 - 0.9) <= 0.02
    assert abs(counts["canary"] / 10_000 - 0.1) <= 0.02
    assert policy.weights({}, MODELS) == pytest.approx({"stable": 0.9, "canary": 0.1})


def test_a_uid_never_changes_arm() -> None:
    policy = _split({"stable": 50, "canary": 50})
    for uid in ("alice", "bob", "42", "carol"):
        arms = {policy.plan({}, MODELS, uid, random.Random(seed)).answer_from for seed in range(1_000)}
        assert len(arms) == 1, uid
    # a second frontend (another policy object, another process's hash seed) puts the user on the same arm
    other = _split({"stable": 50, "canary": 50})
    for uid in ("alice", "bob", "42", "carol"):
        assert other.plan({}, MODELS, uid, random.Random(9)) == policy.plan({}, MODELS, uid, random.Random(1))


def test_uid_0_is_no_user_and_is_drawn() -> None:
    policy = _split({"stable": 50, "canary": 50})
    arms = {policy.plan({}, MODELS, "0", random.Random(seed)).answer_from for seed in range(100)}
    assert arms == set(MODELS)


def test_different_uids_spread_by_the_weights() -> None:
    policy = _split({"stable": 90, "canary": 10})
    rng = random.Random(0)
    counts = Counter(policy.plan({}, MODELS, str(uid), rng).answer_from for uid in range(10_000))
    assert abs(counts["canary"] / 10_000 - 0.1) <= 0.02


def test_uid_points_are_stable_values() -> None:
    # pinned: a change here moves users between arms on upgrade
    assert uid_point("alice") == 0.17266970733180642
    assert (uid_point("1"), uid_point("2")) == (0.782504181843251, 0.1754274764098227)  # neighbours spread
    assert all(0.0 <= uid_point(str(u)) < 1.0 for u in range(1_000))


def test_raising_a_canary_keeps_its_users() -> None:
    small = _split({"stable": 99, "canary": 1})
    large = _split({"stable": 95, "canary": 5})
    rng = random.Random(0)
    on_canary = [u for u in map(str, range(20_000)) if small.plan({}, MODELS, u, rng).answer_from == "canary"]
    assert on_canary
    assert all(large.plan({}, MODELS, u, rng).answer_from == "canary" for u in on_canary)


def test_only_linked_models_are_planned() -> None:
    policy = _split({"stable": 90, "canary": 10})
    rng = random.Random(0)
    assert {policy.plan({}, ("canary",), str(u), rng).answer_from for u in range(100)} == {"canary"}
    assert policy.plan({}, ("other",), None, rng).answer_from is None
    assert policy.weights({}, ("canary", "other")) == {"canary": pytest.approx(1.0), "other": 0.0}


def test_split_takes_no_feedback() -> None:
    with pytest.raises(NoFeedback, match="split"):
        _split({"stable": 1}).update({}, MODELS, "stable", {"stable": 1.0})
