"""Clipper 0.4's framework deployer functions, made from one signature instead of one copy per framework.

Clipper's `deploy_<fw>_model(clipper_conn, name, version, input_type, func, <model>, base_image="default",
labels=None, registry=None, num_replicas=1, batch_size=-1, pkgs_to_install=None)` and `create_endpoint(...)`
are `deploy_python_closure`'s and `create_endpoint`'s signatures with the model inserted after `func`, named
per framework (`pytorch_model`, `model_path_or_object`, ...) so Clipper's keyword calls keep working.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any

from clipper.admin.deployers import python
from clipper.admin.deployers.framework import (
    DeployOptions,
    ModelSaver,
    deploy_saved_model,
    save_framework_model,
)

_OPTIONS = [field.name for field in dataclasses.fields(DeployOptions)]


def _with_model(closure_api: Callable[..., None], model_param: str) -> inspect.Signature:
    """`closure_api`'s signature with `model_param` after `func`, which now takes (model, inputs)."""
    signature = inspect.signature(closure_api)
    params = list(signature.parameters.values())
    at = [p.name for p in params].index("func")
    func = params[at].replace(annotation="Callable[[Any, Any], Any]")
    model = inspect.Parameter(model_param, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation="Any")
    return signature.replace(parameters=[*params[:at], func, model, *params[at + 1 :]])


def _named(
    function: Callable[..., None], signature: inspect.Signature, module: str, name: str, doc: str
) -> None:
    function.__module__, function.__name__, function.__qualname__, function.__doc__ = module, name, name, doc
    function.__signature__ = signature  # type: ignore[attr-defined]  # what help() and IDEs show


def framework_deployer(
    module: str, model_param: str, make_saver: Callable[[Any], ModelSaver]
) -> Callable[..., None]:
    """Module `...deployers.<fw>`'s `deploy_<fw>_model(clipper_conn, name, version, input_type, func,
    <model_param>, ...)`: save the model with `make_saver(model)`, `func` beside it, and deploy them."""
    signature = _with_model(python.deploy_python_closure, model_param)

    def deploy(*args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs)  # a wrong call gets Python's own TypeError
        bound.apply_defaults()
        a = bound.arguments
        save = functools.partial(save_framework_model, a["func"], make_saver(a[model_param]))
        options = DeployOptions(**{k: a[k] for k in _OPTIONS})
        deploy_saved_model(a["clipper_conn"], a["name"], a["version"], a["input_type"], save, options)

    name = f"deploy_{module.rpartition('.')[2]}_model"
    doc = f"Deploy `{model_param}` (Clipper's arguments). {make_saver.__doc__} Replicas call func(model, x)."
    _named(deploy, signature, module, name, doc)
    return deploy


def framework_endpoint(module: str, model_param: str, deploy: Callable[..., None]) -> Callable[..., None]:
    """Clipper's `create_endpoint(clipper_conn, name, input_type, func, <model_param>, default_output, ...)`:
    register app `name`, deploy the model as model `name` with `deploy`, and link them."""
    signature = _with_model(python.create_endpoint, model_param)

    def create_endpoint(*args: Any, **kwargs: Any) -> None:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = dict(bound.arguments)
        conn, name, input_type = a.pop("clipper_conn"), a.pop("name"), a.pop("input_type")
        default_output, slo_micros = a.pop("default_output"), a.pop("slo_micros")
        conn.register_application(name, input_type, default_output, slo_micros, input_shape=a["input_shape"])
        deploy(conn, name, a.pop("version"), input_type, **a)
        conn.link_model_to_app(name, name)

    doc = f"Register app `name`, deploy `{model_param}` as model `name` ({deploy.__name__}), and link them."
    _named(create_endpoint, signature, module, "create_endpoint", doc)
    return create_endpoint
