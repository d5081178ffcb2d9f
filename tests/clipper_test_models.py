"""Predict functions the tests deploy (imported by containers through CLIPPER_PREDICT_MODULE)."""

import os
import time

import numpy as np

_calls = 0


def sum_inputs(inputs):
    """One number per input: the sum of its elements (strings: their length)."""
    return [str(len(x)) if isinstance(x, bytes) else str(np.asarray(x).sum()) for x in inputs]


def echo_strings(inputs):
    return [x.decode() for x in inputs]


def count_calls(inputs):
    """Answers with how many inputs this container has seen: a cached answer keeps an old count."""
    global _calls
    out = []
    for _ in inputs:
        _calls += 1
        out.append(str(_calls))
    return out


def batch_size(inputs):
    """Each input is answered with the size of the batch it came in, after a short compute."""
    time.sleep(0.002)
    return [str(len(inputs))] * len(inputs)


def pid(inputs):
    return [str(os.getpid())] * len(inputs)


def slow(inputs):
    """Sleeps TEST_SLOW_S; first touches TEST_MARK_FILE if set, so a test knows a batch is in hand."""
    if "TEST_MARK_FILE" in os.environ:
        open(os.environ["TEST_MARK_FILE"], "a").close()
    time.sleep(float(os.environ.get("TEST_SLOW_S", "1.0")))
    return [str(len(x)) for x in inputs]


def fail(inputs):
    raise ValueError("this model always fails")


def wrong_count(inputs):
    return ["1"] * (len(inputs) + 1)


def empty(inputs):
    """Answers every input with an empty string."""
    return [""] * len(inputs)


_slowed = False


def slow_once(inputs):
    """The first batch sleeps TEST_SLOW_S (a warm-up, a GC pause); every later one is fast."""
    global _slowed
    if not _slowed:
        _slowed = True
        time.sleep(float(os.environ.get("TEST_SLOW_S", "1.0")))
    return [str(np.asarray(x).sum()) for x in inputs]


def labelled(inputs):
    """Answers a dict per input, as a classifier might: it reaches the client as a JSON object."""
    return [{"label": "big" if np.asarray(x).sum() > 1 else "small", "ok": True} for x in inputs]


def named(inputs):
    """Answers every input with TEST_NAME: which model of an app's several answered."""
    return [os.environ["TEST_NAME"]] * len(inputs)


def true_label(k: int) -> str:
    """The label of example k of the selection tests' data set: one of three classes."""
    return str(k % 3)


def labeller(inputs):
    """Right on TEST_ACCURACY percent of the examples (input [k]), the same ones every time; else wrong."""
    accuracy = int(os.environ["TEST_ACCURACY"])
    out = []
    for x in inputs:
        k = int(np.asarray(x)[0])
        right = (k * 7919) % 100 < accuracy
        out.append(true_label(k) if right else str((k + 1) % 3))
    return out
