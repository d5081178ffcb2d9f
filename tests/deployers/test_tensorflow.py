"""TensorFlow 2 and Keras 3 through their deployers on a real local cluster: a SavedModel and a `.keras`
file, answering as the model does in this process; a TF1 session is refused with the reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clipper.admin import ClipperConnection, ClipperException
from clipper_admin.deployers.keras import deploy_keras_model
from clipper_admin.deployers.tensorflow import deploy_tensorflow_model
from tests.deployers.conftest import model_dir, predict_deployed, same_numbers

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


def tiny_keras_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)]
    )


class Affine(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(tf.random.stateless_normal((4, 2), seed=(1, 2), dtype=tf.float64))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float64)])
    def __call__(self, x):
        return tf.tanh(x @ self.w)


def test_tf_module_is_served_from_a_savedmodel(cluster: ClipperConnection) -> None:
    module = Affine()
    queries = np.random.default_rng(6).normal(size=(5, 4))

    def predict(loaded, inputs):
        return [json.dumps(row.tolist()) for row in loaded(np.asarray(inputs)).numpy()]

    outputs = predict_deployed(cluster, "tfmod", queries.tolist(), deploy_tensorflow_model, predict, module)
    assert same_numbers(outputs, module(queries).numpy())
    saved = model_dir(cluster, "tfmod")
    assert (saved / "savedmodel" / "saved_model.pb").is_file()
    assert json.loads((saved / "metadata.json").read_text())["format"] == "tf-savedmodel"


def test_keras_file_is_served_with_keras_load_model(cluster: ClipperConnection, tmp_path) -> None:
    model = tiny_keras_model()
    path = tmp_path / "tiny.keras"
    model.save(path)
    queries = np.random.default_rng(7).normal(size=(4, 4))

    def predict(model, inputs):
        return [json.dumps(float(v)) for v in model.predict(np.asarray(inputs), verbose=0)[:, 0]]

    outputs = predict_deployed(cluster, "keras", queries.tolist(), deploy_keras_model, predict, str(path))
    assert same_numbers(outputs, model.predict(queries, verbose=0)[:, 0])
    metadata = json.loads((model_dir(cluster, "keras") / "metadata.json").read_text())
    assert metadata["format"] == "keras"
    assert metadata["packages"]["keras"] == keras.__version__
    assert len(metadata["packages"]) == 2  # and the backend: tensorflow or tensorflow-cpu


def test_a_tf1_session_is_refused_with_the_reason(cluster: ClipperConnection) -> None:
    with pytest.raises(ClipperException, match="TensorFlow 1 sessions"):
        deploy_tensorflow_model(cluster, "tf1", 1, "doubles", lambda s, xs: xs, tf.compat.v1.Session())
    assert cluster.get_num_replicas("tf1", "1") == 0
