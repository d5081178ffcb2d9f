"""check_params and make_policy: every policy's parameters validated, errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

import clipper.selection as selection
from clipper.schema import DEFAULT_POLICY as SCHEMA_DEFAULT_POLICY
from clipper.selection import DEFAULT_POLICY, POLICIES, check_params, make_policy

MODELS = ("a", "b", "c")


def test_exports_exactly_the_contract() -> None:
    assert sorted(selection.__all__) == sorted(
        [
            "DEFAULT_POLICY",
            "POLICIES",
            "NoFeedback",
            "check_params",
            "make_policy",
            "Plan",
            "Combined",
            "Policy",
            "reward",
        ]
    )
    assert DEFAULT_POLICY == SCHEMA_DEFAULT_POLICY
    assert POLICIES == (DEFAULT_POLICY, "split", "shadow", "exp3", "exp4")


@pytest.mark.parametrize(
    ("policy", "params", "field", "problem"),
    [
        ("bandit", {}, "policy:", "unknown policy 'bandit'"),
        (DEFAULT_POLICY, {"gamma": 0.1}, "gamma:", "unknown parameter of the default policy"),
        ("split", {}, "weights:", "required"),
        ("split", {"weights": {}}, "weights:", "non-empty"),
        ("split", {"weights": [0.5, 0.5]}, "weights:", "non-empty object"),
        ("split", {"weights": {"a": 0.9, "zz": 0.1}}, "weights.zz:", "not a model linked"),
        ("split", {"weights": {"a": 1, "b": 0}}, "weights.b:", "must be in (0, inf)"),
        ("split", {"weights": {"a": 1, "b": -2}}, "weights.b:", "must be in (0, inf)"),
        ("split", {"weights": {"a": "90%"}}, "weights.a:", "finite number"),
        ("split", {"weights": {"a": True}}, "weights.a:", "finite number"),
        ("split", {"weights": {"a": float("nan")}}, "weights.a:", "finite number"),
        ("split", {"weights": {"a": 1}, "weight": 2}, "weight:", "unknown parameter of the split policy"),
        ("shadow", {}, "primary:", "required"),
        ("shadow", {"primary": "zz"}, "primary:", "'zz' is not a model linked to this app (linked: a, b, c)"),
        ("shadow", {"primary": 3}, "primary:", "must be a model name"),
        ("exp3", {"gamma": 0}, "gamma:", "must be in (0, 1]"),
        ("exp3", {"gamma": 1.5}, "gamma:", "must be in (0, 1]"),
        ("exp3", {"per_user": "yes"}, "per_user:", "true or false"),
        ("exp3", {"error_scale": 0}, "error_scale:", "must be in (0, inf)"),
        ("exp4", {"eta": -1}, "eta:", "must be in (0, inf)"),
        ("exp4", {"confidence": 1.2}, "confidence:", "must be in [0, 1]"),
        ("exp4", {"tolerance": -0.1}, "tolerance:", "must be in [0, inf)"),
        ("exp4", {"combine": "median"}, "combine:", "auto, vote"),
    ],
)
def test_check_params_names_field_and_problem(
    policy: str, params: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(ValueError) as err:
        check_params(policy, params, MODELS)
    assert str(err.value).startswith(field)
    assert problem in str(err.value)


def test_params_must_be_an_object() -> None:
    with pytest.raises(ValueError, match=r"^params: must be a JSON object, got list"):
        check_params("exp3", [], MODELS)  # type: ignore[arg-type]


def test_check_params_normalises_and_fills_defaults() -> None:
    assert check_params(DEFAULT_POLICY, {}, ("a",)) == {}
    assert check_params("split", {"weights": {"a": 9, "b": 1}}, MODELS) == {"weights": {"a": 0.9, "b": 0.1}}
    assert check_params("shadow", {"primary": "b"}, MODELS) == {"primary": "b"}
    assert check_params("exp3", {}, MODELS) == {"gamma": 0.1, "per_user": False, "error_scale": 1.0}
    assert check_params("exp4", {"per_user": True}, MODELS) == {
        "eta": 0.5,
        "confidence": 0.0,
        "tolerance": 0.1,
        "per_user": True,
        "error_scale": 1.0,
        "combine": "auto",
    }


@pytest.mark.parametrize(
    ("policy", "params", "takes_feedback", "per_user"),
    [
        (DEFAULT_POLICY, {}, False, False),
        ("split", {"weights": {"a": 1}}, False, False),
        ("shadow", {"primary": "a"}, False, False),
        ("exp3", {"per_user": True}, True, True),
        ("exp4", {}, True, False),
    ],
)
def test_make_policy_from_checked_params(
    policy: str, params: dict[str, Any], takes_feedback: bool, per_user: bool
) -> None:
    made = make_policy(policy, check_params(policy, params, MODELS))
    assert made.name == policy
    assert made.takes_feedback is takes_feedback
    assert made.per_user is per_user
    weights = made.weights(made.initial_state(MODELS), MODELS)
    assert set(weights) == set(MODELS)
    assert sum(weights.values()) == pytest.approx(1.0)


def test_make_policy_refuses_unknown_policy() -> None:
    with pytest.raises(ValueError, match=r"^policy: unknown policy 'nope'"):
        make_policy("nope", {})
