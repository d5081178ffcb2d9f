"""reward(): equality for labels, bounded error for numbers, always within [0, 1]; weight normalisation."""

from __future__ import annotations

import math
from typing import Any

import pytest

from clipper.selection import reward
from clipper.selection.base import WEIGHT_FLOOR, normalised


@pytest.mark.parametrize(
    ("output", "label", "expected"),
    [
        (b"cat", "cat", 1.0),
        (b"cat\n", " cat", 1.0),
        (b"dog", "cat", 0.0),
        (b"Cat", "cat", 0.0),
        (b"1.0", "1", 1.0),  # both spell the same number
        (b"\xff\xfe", "cat", 0.0),  # not UTF-8: no error, just wrong
    ],
)
def test_reward_of_labels_is_equality(output: bytes, label: str, expected: float) -> None:
    assert reward(output, label, {}) == expected


@pytest.mark.parametrize(
    ("output", "label", "params", "expected"),
    [
        (b"3", 3, {}, 1.0),
        (b"3.25", 3.0, {}, 0.75),
        (b"2.5", 3.0, {"error_scale": 2.0}, 0.75),
        (b"10", 3.0, {}, 0.0),  # bounded: a far miss is 0, not negative
        (b"-1e308", 1e308, {}, 0.0),  # the difference overflows to inf
        (b"nan", 1.0, {}, 0.0),  # not a JSON number
        (b"1_0", 10.0, {}, 0.0),
        (b"ten", 10.0, {}, 0.0),
    ],
)
def test_reward_of_numbers_is_bounded_error(
    output: bytes, label: float, params: dict[str, Any], expected: float
) -> None:
    assert reward(output, label, params) == pytest.approx(expected)


@pytest.mark.parametrize("label", [True, None, [1], float("nan"), float("inf")])
def test_reward_refuses_bad_label(label: object) -> None:
    with pytest.raises(ValueError, match=r"^label: must be a"):
        reward(b"1", label, {})  # type: ignore[arg-type]


def test_normalised_sums_to_one_and_keeps_a_floor() -> None:
    weights = normalised({"a": 1e300, "b": 1.0, "c": 0.0})
    assert math.fsum(weights.values()) == pytest.approx(1.0)
    assert min(weights.values()) == pytest.approx(WEIGHT_FLOOR, rel=0.01)
    assert normalised({"a": math.inf, "b": 1.0}) == {"a": 0.5, "b": 0.5}  # broken state: start over
