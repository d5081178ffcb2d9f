"""Clipper 0.4's `clipper_admin.deployers` package path; framework modules import their framework only
when a model is deployed, so importing them is cheap."""

from clipper_admin.deployers import keras, lightgbm, onnx, python, pytorch, sklearn, tensorflow, xgboost

__all__ = ["keras", "lightgbm", "onnx", "python", "pytorch", "sklearn", "tensorflow", "xgboost"]
