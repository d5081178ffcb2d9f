"""What a model's outputs become on the wire, and so in the client's JSON."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from clipper.query.answers import embed_json
from clipper.runtime.outputs import encode_output


@pytest.mark.parametrize(
    ("output", "client_sees"),
    [
        ("3.5", 3.5),  # Clipper's rule: text that parses as JSON is embedded as JSON
        ("cat", "cat"),
        ({"label": "cat", "p": 0.9}, {"label": "cat", "p": 0.9}),  # was "{'label': 'cat', 'p': 0.9}"
        ([1, 2], [1, 2]),
        (True, True),  # was "True"
        (None, None),  # was "None"
        (np.float32(0.5), 0.5),
        (np.array([0.25, 0.5]), [0.25, 0.5]),  # was "[0.25 0.5 ]"
        ({1: "a"}, {"1": "a"}),
    ],
)
def test_non_string_outputs_reach_the_client_as_json(output: object, client_sees: object) -> None:
    assert orjson.loads(embed_json(encode_output(output))) == client_sees


def test_bytes_are_sent_as_they_are_and_other_objects_as_their_text() -> None:
    assert encode_output(b"\x00raw") == b"\x00raw"
    assert encode_output(object) == b"<class 'object'>"
