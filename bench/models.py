"""Models the benchmarks deploy: a no-op, and one that costs like a small dense layer."""

from __future__ import annotations

import time

import numpy as np

_RNG = np.random.default_rng(0)
W = _RNG.standard_normal((784, 512), dtype=np.float32)


def noop(inputs):  # type: ignore[no-untyped-def]
    """Answers every input with 0 and does nothing else."""
    return ["0"] * len(inputs)


def slow5ms(inputs):  # type: ignore[no-untyped-def]
    """A model with a fixed cost of 5 ms per batch: with batch size 1, capacity is ~200 queries/s."""
    time.sleep(0.005)
    return ["1"] * len(inputs)


def dense784(inputs):  # type: ignore[no-untyped-def]
    """argmax(tanh(x @ W)) per input, W 784x512 float32: ~31 us alone, ~9 us per input in a batch of 32."""
    x = np.asarray(inputs, dtype=np.float32).reshape(len(inputs), 784)
    return [str(i) for i in np.argmax(np.tanh(x @ W), axis=1)]


def per_input_500us(inputs):  # type: ignore[no-untyped-def]
    """0.5 ms per input whatever the batch: a replica answers ~2,000 queries/s at most (the soak's model)."""
    time.sleep(0.0005 * len(inputs))
    return ["1"] * len(inputs)
