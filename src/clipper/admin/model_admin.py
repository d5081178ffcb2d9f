"""ModelAdmin: ClipperConnection's model-version, replica and model-stopping calls (Clipper 0.4 names).

Versions are recorded through the management API; the container manager starts and stops their replicas.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from clipper.admin.exceptions import ClipperException
from clipper.admin.management_api import ManagementApi
from clipper.schema import NO_CONTAINER, check_dns_label
from clipper.types import InputType

logger = logging.getLogger(__name__)

REPLICA_WAIT_S = 120.0  # how long a deploy waits for its first replica to connect before it gives up


def check_input_shape(input_type: str, input_shape: list[int] | None) -> None:
    """Refuse a shape the management API would refuse, before any image is built or replica started."""
    if input_shape is None:
        return
    if not InputType.parse(input_type).is_numeric:
        raise ClipperException(
            f"input_shape is for numeric input types (bytes, integers, floats, doubles), not {input_type}"
        )
    if not input_shape or any(type(n) is not int or n <= 0 for n in input_shape):
        raise ClipperException(f"input_shape must be a non-empty list of positive ints, not {input_shape!r}")


def validate_versioned_model_name(name: str, version: str) -> None:
    """Clipper's client-side DNS-1123 rule for model names and versions."""
    for kind, value in (("model name", name), ("model version", version)):
        try:
            check_dns_label(kind, value)
        except ValueError as e:
            raise ClipperException(str(e)) from None


class ModelAdmin(ManagementApi):
    """Build, deploy, register, version, scale and stop models."""

    # -- models ----------------------------------------------------------------------------------------

    def check_new_version(self, name: str, version: str) -> None:
        """Refuse, before anything is built, saved or started, a version that cannot be deployed."""
        validate_versioned_model_name(name, version)
        if self.get_model_info(name, version) is not None:
            raise ClipperException(
                f"model with name '{name}' and version '{version}' already exists; deploy it under a new "
                "version (nothing was changed)"
            )

    def _current_or_none(self, name: str) -> str | None:
        try:
            return self.get_current_model_version(name)
        except ClipperException:
            return None

    def build_model(
        self,
        name: str,
        version: str,
        model_data_path: str,
        base_image: str,
        container_registry: str | None = None,
        pkgs_to_install: list[str] | None = None,
    ) -> str:
        """Build (and push) a model image; only managers with an image builder (Docker) can."""
        version = str(version)
        validate_versioned_model_name(name, version)
        return self.cm.build_model(
            name, version, model_data_path, base_image, container_registry, pkgs_to_install
        )

    def build_and_deploy_model(
        self,
        name: str,
        version: str,
        input_type: str,
        model_data_path: str,
        base_image: str,
        labels: list[str] | None = None,
        container_registry: str | None = None,
        num_replicas: int = 1,
        batch_size: int = -1,
        pkgs_to_install: list[str] | None = None,
        input_shape: list[int] | None = None,
    ) -> None:
        """`build_model`, then `deploy_model` with the built image; an existing version is refused first."""
        self._require_connection()
        version = str(version)
        self.check_new_version(name, version)
        check_input_shape(input_type, input_shape)
        image = self.build_model(
            name, version, model_data_path, base_image, container_registry, pkgs_to_install
        )
        self.deploy_model(
            name, version, input_type, image, labels, num_replicas, batch_size, input_shape=input_shape
        )

    def deploy_model(
        self,
        name: str,
        version: str,
        input_type: str,
        image: str,
        labels: list[str] | None = None,
        num_replicas: int = 1,
        batch_size: int = -1,
        input_shape: list[int] | None = None,
    ) -> None:
        """Start the replicas, wait until one is connected, then register the version (it becomes current).
        `input_shape` (numeric types): each input's shape, which the model's replicas get batches in.

        All or nothing: when no replica starts, the replicas are stopped, the version is not registered and
        the previous version stays current; the error says so.
        """
        self._require_connection()
        version = str(version)
        self.check_new_version(name, version)
        check_input_shape(input_type, input_shape)
        previous = self._current_or_none(name)
        self.cm.deploy_model(
            name=name,
            version=version,
            input_type=input_type,
            image=image,
            num_replicas=num_replicas,
            input_shape=input_shape,
        )
        try:
            if num_replicas > 0:
                self.wait_for_model(name, version, 1, REPLICA_WAIT_S)
            self.register_model(name, version, input_type, image, labels, batch_size, input_shape=input_shape)
        except BaseException as e:
            self.cm.stop_models({name: [version]})
            still = f"version {previous} is still current" if previous else "no version of it is registered"
            raise ClipperException(
                f"Model {name}:{version} was not deployed and its replicas were stopped; {still}. {e}"
            ) from e
        logger.info("Done deploying model %s:%s.", name, version)

    def register_model(
        self,
        name: str,
        version: str,
        input_type: str,
        image: str | None = None,
        labels: list[str] | None = None,
        batch_size: int = -1,
        input_shape: list[int] | None = None,
    ) -> None:
        """Record a model version (no containers are started); it becomes the current version."""
        body = {
            "model_name": name,
            "model_version": str(version),
            "labels": labels if labels is not None else [],
            "input_type": input_type,
            "container_name": image if image is not None else NO_CONTAINER,
            "model_data_path": "DEPRECATED",
            "batch_size": batch_size,
        }
        if input_shape is not None:  # ours; left out otherwise, so the body stays Clipper's
            body["input_shape"] = list(input_shape)
        self._admin("add_model", body)
        logger.info("Successfully registered model %s:%s", name, version)

    def get_current_model_version(self, name: str) -> str:
        """The version queries of `name` go to."""
        for m in self.get_all_models(verbose=True):
            if m["model_name"] == name and m["is_current_version"]:
                return str(m["model_version"])
        raise ClipperException(f"No versions of model {name} registered with Clipper")

    def set_model_version(self, name: str, version: str, num_replicas: int | None = None) -> None:
        """Make `version` current (roll forward or back), optionally resizing its replica set."""
        version = str(version)
        self._admin("set_model_version", {"model_name": name, "model_version": version})
        logger.info("Successfully set model %s to version %s", name, version)
        if num_replicas is not None:
            self.set_num_replicas(name, num_replicas, version)

    def get_all_models(self, verbose: bool = False) -> list[Any]:
        """`name:version` strings, or model descriptions when `verbose`."""
        return list(self._admin_json("get_all_models", {"verbose": verbose}))

    def get_model_info(self, name: str, version: str) -> dict[str, Any] | None:
        """The model version's description, or None if it does not exist."""
        info = self._admin_json("get_model", {"model_name": name, "model_version": str(version)})
        return info or None

    # -- replicas --------------------------------------------------------------------------------------

    def get_num_replicas(self, name: str, version: str | None = None) -> int:
        """How many replicas of the version (default: current) the manager runs."""
        self._require_connection()
        version = self.get_current_model_version(name) if version is None else str(version)
        return self.cm.get_num_replicas(name, version)

    def set_num_replicas(self, name: str, num_replicas: int, version: str | None = None) -> None:
        """Start or stop replicas of the version (default: current) until `num_replicas` run."""
        self._require_connection()
        version = self.get_current_model_version(name) if version is None else str(version)
        model = self.get_model_info(name, version)
        if model is None:
            raise ClipperException(f"Cannot add container for non-registered model {name}:{version}")
        if model["container_name"] == NO_CONTAINER:
            raise ClipperException(f"Cannot resize the replica set for containerless model {name}:{version}")
        self.cm.set_num_replicas(
            name,
            version,
            model["input_type"],
            model["container_name"],
            num_replicas,
            input_shape=model.get("input_shape"),
        )

    def get_all_model_replicas(self, verbose: bool = False) -> list[Any]:
        """`name:version:replica_id` strings of connected replicas, or their descriptions."""
        return list(self._admin_json("get_all_containers", {"verbose": verbose}))

    def get_model_replica_info(self, name: str, version: str, replica_id: int) -> dict[str, Any] | None:
        """One connected replica's description, or None."""
        body = {"model_name": name, "model_version": str(version), "replica_id": replica_id}
        info = self._admin_json("get_container", body)
        return info or None

    def wait_for_model(
        self, name: str, version: str | None = None, num_replicas: int = 1, timeout_s: float = 60.0
    ) -> None:
        """Block until `num_replicas` replicas of the version have connected to a query frontend."""
        version = self.get_current_model_version(name) if version is None else str(version)
        deadline = time.monotonic() + timeout_s
        while True:
            self.cm.check_model_replicas(name, version)
            prefix = f"{name}:{version}:"
            if sum(r.startswith(prefix) for r in self.get_all_model_replicas()) >= num_replicas:
                return
            if time.monotonic() > deadline:
                raise ClipperException(
                    f"Model {name}:{version} has fewer than {num_replicas} connected replicas after "
                    f"{timeout_s:.0f} s; see the replica logs (get_clipper_logs)"
                )
            time.sleep(0.1)

    # -- stopping models -------------------------------------------------------------------------------

    def _versions(self, model_names: list[str] | None, only_inactive: bool = False) -> dict[str, list[str]]:
        """`{name: [versions]}` of the registered models (all when `model_names` is None)."""
        return _versions_of(self.get_all_models(verbose=True), model_names, only_inactive)

    def _unregister_versioned_models(
        self, model_versions: dict[str, list[str]], current: dict[str, str]
    ) -> None:
        """Unregister the versions, each model's current one last: the API refuses it while others remain."""
        for name, versions in model_versions.items():
            for version in sorted(versions, key=lambda v: v == current.get(name)):
                self._admin("delete_versioned_model", {"model_name": name, "model_version": version})
                logger.info("Model %s:%s was successfully deleted", name, version)

    def stop_models(self, model_names: list[str]) -> None:
        """Stop the replicas of every version of these models and unregister the versions."""
        self.stop_versioned_models(self._versions(model_names))

    def stop_versioned_models(self, model_versions_dict: dict[str, list[str]]) -> None:
        """Stop and unregister the given versions. As in Clipper, a current version may go while others stay:
        the last of the remaining versions (in sort order) is made current first, and the log says so, so
        the model never points at a deleted version."""
        self._require_connection()
        models = self.get_all_models(verbose=True)  # one listing: every version and which is current
        registered = _versions_of(models, list(model_versions_dict))
        current = _current_versions(models)
        for name, versions in model_versions_dict.items():
            kept = set(registered.get(name, [])) - {str(v) for v in versions}
            if current.get(name) in versions and kept:
                successor = sorted(kept)[-1]
                logger.warning("Stopping the current version %s of model %s: %s is current now",
                               current[name], name, successor)  # fmt: skip
                self.set_model_version(name, successor)
                current[name] = successor
        self.cm.stop_models(model_versions_dict)
        self._unregister_versioned_models(model_versions_dict, current)

    def stop_inactive_model_versions(self, model_names: list[str]) -> None:
        """Stop and unregister every version of these models except the current one."""
        self.stop_versioned_models(self._versions(model_names, only_inactive=True))

    def stop_all_model_containers(self) -> None:
        """Stop every model replica of the cluster and unregister every model version."""
        self._require_connection()
        models = self.get_all_models(verbose=True)
        self.cm.stop_all_model_containers()
        self._unregister_versioned_models(_versions_of(models, None), _current_versions(models))


def _versions_of(
    models: list[Any], model_names: list[str] | None, only_inactive: bool = False
) -> dict[str, list[str]]:
    """`{name: [versions]}` in a verbose model listing (every model when `model_names` is None)."""
    found: dict[str, list[str]] = {}
    for m in models:
        if model_names is not None and m["model_name"] not in model_names:
            continue
        if only_inactive and m["is_current_version"]:
            continue
        found.setdefault(m["model_name"], []).append(m["model_version"])
    return found


def _current_versions(models: list[Any]) -> dict[str, str]:
    """`{name: current version}` in a verbose model listing."""
    return {m["model_name"]: str(m["model_version"]) for m in models if m["is_current_version"]}
