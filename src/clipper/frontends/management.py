"""The management frontend: Clipper's admin operations over the config store, and its process entry point.

Run with `python -m clipper.frontends.management` (settings: ManagementFrontendSettings, env CLIPPER_*).
Every operation validates completely before it writes, and writes once through the ConfigStore's
transactional methods, so a rejected request leaves Redis untouched. Messages are Clipper's (reference §3.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import uvicorn
import uvloop
from redis.exceptions import RedisError

from clipper.admin.replica_control import (
    NOT_STARTED,
    ReplicaControl,
    Unavailable,
    replica_control,
)
from clipper.config.store import ConfigStore, Db
from clipper.errors import ConfigConflict, InUse, InvalidInput
from clipper.frontends.management_http import build_management_app
from clipper.schema import (
    FORBIDDEN_NAME_CHARS,
    AddAppRequest,
    AddModelRequest,
    App,
    AppInfo,
    AppPolicy,
    Container,
    ContainerInfo,
    Model,
    ModelInfo,
    SetAppPolicyRequest,
)
from clipper.selection import DEFAULT_POLICY, check_params, make_policy
from clipper.settings import ManagementFrontendSettings, reveal

logger = logging.getLogger(__name__)


class Management:
    """Clipper's management operations; one instance per management frontend process."""

    def __init__(
        self, store: ConfigStore, replica_control: ReplicaControl | None = None, max_replicas: int = 32
    ) -> None:
        """`replica_control`: how set_num_replicas and friends act on the cluster (none: they answer 501)."""
        self._store = store
        self.replica_control = replica_control or Unavailable(NOT_STARTED)
        self.max_replicas = max_replicas
        self._ready = False
        # One writer process: serialising check-then-write here makes every validation hold at write time.
        self._write_lock = asyncio.Lock()

    @property
    def redis_address(self) -> str:
        """The store's URL without credentials, for logs and error messages."""
        return self._store.address

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def store(self) -> ConfigStore:
        """The config store, for read-only views over its records (the cluster view)."""
        return self._store

    async def connect(self, retry_interval_s: float = 1.0) -> None:
        """Connect to Redis, retrying forever (as Clipper does); ready from then on."""
        await self._store.start_retrying(retry_interval_s)
        self._ready = True

    async def close(self) -> None:
        self._ready = False
        await self._store.close()

    async def ping(self) -> bool:
        """True when the store is connected and answers PING now."""
        if not self._ready:
            return False
        try:
            return bool(await self._store.db(Db.APPS).ping())
        except RedisError:
            return False

    # --- applications -----------------------------------------------------------------------

    async def add_app(self, req: AddAppRequest) -> None:
        async with self._write_lock:
            if await self._store.get_app(req.name) is not None:
                raise ConfigConflict(f"application '{req.name}' already exists")
            await self._store.add_app(App(**req.model_dump()))
        logger.info("Added application %s", req.name)

    async def delete_app(self, name: str) -> None:
        """Delete the app with its links and state (Clipper left them behind, bug #774)."""
        async with self._write_lock:
            if await self._store.get_app(name) is None:
                raise ConfigConflict(f"Application '{name}' does not exist")
            await self._store.delete_app(name)
        logger.info("Deleted application %s", name)

    async def app_names(self) -> list[str]:
        return await self._store.list_app_names()

    async def app_info(self, name: str) -> AppInfo | None:
        app = await self._store.get_app(name)
        if app is None:
            return None
        return AppInfo(**app.model_dump(), linked_models=await self._store.get_links(name))

    async def linked_models(self, app_name: str) -> list[str]:
        if await self._store.get_app(app_name) is None:
            raise ConfigConflict(f"No application with name '{app_name}' exists.")
        return await self._store.get_links(app_name)

    async def state(self, app_name: str, uid: int) -> str:
        """The app's selection state (its default output); Clipper keeps only uid 0, so any uid reads it."""
        if uid != 0:
            logger.debug("get_state for uid %s reads uid 0", uid)
        return await self._store.get_state(app_name) or ""

    async def _existing_app(self, name: str) -> App:
        """The app's record, or ConfigConflict with Clipper's message for an unknown one."""
        app = await self._store.get_app(name)
        if app is None:
            raise ConfigConflict(f"No app with name '{name}' exists.")
        return app

    # --- selection policies ---------------------------------------------------------------------

    async def set_app_policy(self, req: SetAppPolicyRequest) -> None:
        """Validate the params against the linked models, then store them; a new policy starts unlearned."""
        async with self._write_lock:
            app = await self._existing_app(req.name)
            linked = await self._store.get_links(req.name)
            if req.policy == DEFAULT_POLICY and len(linked) > 1:
                raise ConfigConflict(
                    f"policy: {DEFAULT_POLICY} serves one model and application '{req.name}' is linked to "
                    f"{len(linked)} ({', '.join(linked)}); unlink all but one first"
                )
            params = _checked(req.policy, req.params, linked)
            await self._store.set_app_policy(
                req.name, req.policy, params, reset_state=req.policy != app.policy
            )
        logger.info("Set the policy of application %s to %s %s", req.name, req.policy, params)

    async def app_policy(self, name: str) -> AppPolicy:
        """The app's policy, params and (with linked models) each model's weight in its global state."""
        app = await self._existing_app(name)
        linked = await self._store.get_links(name)
        weights = None
        if linked:
            policy = make_policy(app.policy, app.policy_params)
            state = await self._store.get_selection_state(name, "0")
            weights = policy.weights(state if state is not None else policy.initial_state(linked), linked)
        return AppPolicy(policy=app.policy, params=app.policy_params, weights=weights)

    # --- models -----------------------------------------------------------------------------

    async def add_model(self, req: AddModelRequest) -> None:
        """Register a version and make it current; checks run in Clipper's order."""
        if req.batch_size <= 0 and req.batch_size != -1:
            raise InvalidInput("The batch size must be positive or DEFAULT_BATCH_SIZE, which is -1")
        _check_chars("model name", req.model_name)
        _check_chars("model version", req.model_version)
        for label in req.labels:
            _check_chars("label", label)
        async with self._write_lock:
            if await self._store.get_model(req.model_name, req.model_version) is not None:
                raise ConfigConflict(
                    f"model with name '{req.model_name}' and version '{req.model_version}' already exists"
                )
            await self._check_linked_apps(req.model_name, req.input_type, req.input_shape)
            await self._store.add_model(Model(**req.model_dump()))
        logger.info("Added model %s:%s (%s)", req.model_name, req.model_version, req.input_type)

    async def delete_model(self, name: str, version: str) -> None:
        """Delete the version for real (Clipper only marked it for a frontend to sweep, §9 #19).

        A version Clipper had marked but never swept is deleted too. Deleting the last version drops the
        current pointer. The current version is refused while others remain (Clipper left the pointer on
        the deleted version, and the model's apps with nothing that serves).
        """
        async with self._write_lock:
            versions = await self._store.model_versions(name)
            if version not in versions:
                raise ConfigConflict(f"model with name '{name}' and version '{version}' does not exist")
            if len(versions) > 1 and await self._store.get_current_version(name) == version:
                others = ", ".join(sorted(v for v in versions if v != version))
                raise InUse(
                    f"version '{version}' is the current version of model '{name}'; make another version "
                    f"current first (set_model_version; other versions: {others}), then delete it"
                )
            await self._store.delete_model(name, version)
        logger.info("Deleted model %s:%s", name, version)

    async def set_model_version(self, name: str, version: str) -> None:
        async with self._write_lock:
            if not await self._store.model_versions(name):
                raise ConfigConflict(f"Cannot set version for nonexistent model '{name}'")
            model = await self._store.get_model(name, version)
            if model is None:
                raise ConfigConflict(
                    f"Cannot set non-existent version '{version}' for model with name '{name}'"
                )
            await self._check_linked_apps(name, model.input_type, model.input_shape)
            await self._store.set_current_version(name, version)
        logger.info("Set model %s to version %s", name, version)

    async def models(self) -> list[ModelInfo]:
        models = await self._store.list_models()
        current = {
            name: await self._store.get_current_version(name) for name in {m.model_name for m in models}
        }
        return [_model_info(m, current[m.model_name]) for m in models]

    async def model_info(self, name: str, version: str) -> ModelInfo | None:
        model = await self._store.get_model(name, version)
        if model is None:
            return None
        return _model_info(model, await self._store.get_current_version(name))

    async def _check_linked_apps(
        self, model_name: str, input_type: str, input_shape: list[int] | None
    ) -> None:
        """A model's versions must keep the input type and shape of every app it is linked to."""
        for app_name in await self._store.apps_linked_to(model_name):
            app = await self._store.get_app(app_name)
            if app is not None and app.input_type != input_type:
                raise ConfigConflict(
                    f"Model with name '{model_name}' is already linked to app '{app_name}' using input type "
                    f"'{app.input_type}'. The input type you provided for a new version of the model, "
                    f"'{input_type}', is not compatible."
                )
            if app is not None and app.input_shape != input_shape:
                raise ConfigConflict(
                    f"Model with name '{model_name}' is already linked to app '{app_name}' using input_shape "
                    f"{app.input_shape}. The input_shape of this version of the model, {input_shape}, "
                    "is not compatible."
                )

    # --- links ------------------------------------------------------------------------------

    async def add_links(self, app_name: str, model_names: list[str]) -> str:
        """Link the app to its one model; returns the linked model's name."""
        async with self._write_lock:
            app = await self._existing_app(app_name)
            for name in model_names:
                version = await self._store.get_current_version(name)
                model = await self._store.get_model(name, version) if version is not None else None
                if model is None:
                    raise ConfigConflict(f"No model with name '{name}' exists.")
                if model.input_type != app.input_type:
                    raise ConfigConflict(
                        f"Model with name '{name}' has incompatible input_type '{model.input_type}'. "
                        f"Requested app to link to has input_type '{app.input_type}'."
                    )
                if model.input_shape != app.input_shape:
                    raise ConfigConflict(
                        f"Model with name '{name}' has incompatible input_shape {model.input_shape}. "
                        f"Requested app to link to has input_shape {app.input_shape}."
                    )
            if not model_names:
                raise InvalidInput(
                    "Please provide the name of the model that you want to link to the application "
                    f"'{app_name}'"
                )
            if len(model_names) > 1:
                attempted = f"Attempted to add links to {len(model_names)} models."
                raise InvalidInput(
                    f"Applications must be linked with at most one model. {attempted}"
                    if app.policy == DEFAULT_POLICY
                    else f"Link one model per call (application '{app_name}' has policy {app.policy}, "
                    f"which takes several, one at a time). {attempted}"
                )
            (name,) = model_names
            linked = await self._store.get_links(app_name)
            if name in linked:
                raise ConfigConflict(f"The model with name '{name}' is already linked to '{app_name}'")
            if linked and app.policy == DEFAULT_POLICY:
                raise ConfigConflict(f"A model with name {linked[0]} is already linked to '{app_name}'.")
            if app.policy != DEFAULT_POLICY:
                try:
                    check_params(app.policy, app.policy_params, [*linked, name])
                except ValueError as e:
                    raise ConfigConflict(
                        f"Cannot link model '{name}' to '{app_name}': the params of its policy {app.policy} "
                        f"do not fit the models then linked ({e}); set the policy with params for them "
                        "first (set_app_policy)"
                    ) from None
            await self._store.add_link(app_name, name)
        logger.info("Linked model %s to application %s", name, app_name)
        return name

    async def delete_links(self, app_name: str, model_names: list[str]) -> None:
        """Unlink models; refused (InUse) while the app's policy params need one of them."""
        async with self._write_lock:
            app = await self._store.get_app(app_name)
            if app is None:
                raise ConfigConflict(f"No app with name {app_name} exists.")
            linked = await self._store.get_links(app_name)
            for name in model_names:
                if name not in linked:
                    raise ConfigConflict(
                        f"Cannot remove nonexistent link between app {app_name} and model {name}"
                    )
            if app.policy != DEFAULT_POLICY:
                remaining = [m for m in linked if m not in model_names]
                try:
                    check_params(app.policy, app.policy_params, remaining)
                except ValueError as e:
                    raise InUse(
                        f"Cannot unlink {', '.join(sorted(set(model_names)))} from application '{app_name}': "
                        f"the params of its policy {app.policy} need it ({e}); change the policy first "
                        "(set_app_policy), then unlink"
                    ) from None
            for name in sorted(set(model_names)):
                await self._store.remove_link(app_name, name)
        logger.info("Unlinked models %s from application %s", model_names, app_name)

    # --- containers -------------------------------------------------------------------------

    async def containers(self) -> list[ContainerInfo]:
        """Replicas registered by every query frontend (DB 3)."""
        return [_container_info(c) for c in await self._store.list_containers()]

    async def container_info(self, name: str, version: str, replica_id: int) -> ContainerInfo | None:
        container = await self._store.get_container(name, version, replica_id)
        return _container_info(container) if container is not None else None


def _checked(policy: str, params: dict[str, Any], linked: list[str]) -> dict[str, Any]:
    """The policy's own check of its params against the linked models, as a 400 naming the field."""
    try:
        return check_params(policy, params, linked)
    except ValueError as e:
        raise InvalidInput(f"params: invalid for policy {policy}: {e}") from None


def _check_chars(kind: str, value: str) -> None:
    """`,` and `:` delimit Redis keys and lists, so Clipper forbids them in model names, versions, labels."""
    if any(ch in value for ch in FORBIDDEN_NAME_CHARS):
        raise InvalidInput(f"Invalid {kind} supplied: {value}. Contains one of: ',', ':'")


def _model_info(model: Model, current_version: str | None) -> ModelInfo:
    current = model.model_version == current_version
    return ModelInfo(**model.model_dump(exclude={"batch_size"}), is_current_version=current)


def _container_info(container: Container) -> ContainerInfo:
    return ContainerInfo.model_validate(container, from_attributes=True)


# --- process entry point ------------------------------------------------------------------------


async def run_management_frontend(settings: ManagementFrontendSettings) -> None:
    """Serve /admin at once (ping answers 503 until Redis is reachable) while connecting to Redis."""
    store = ConfigStore(settings.redis_url, password=reveal(settings.redis_password))
    management = Management(store, replica_control(settings), settings.max_replicas)
    config = uvicorn.Config(
        build_management_app(management, settings.auth_token, settings.query_token),
        host=settings.http_host,
        port=settings.management_port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    logger.info(
        "Management frontend starting on http://%s:%d (Redis %s, admin token %s)",
        settings.http_host,
        settings.management_port,
        management.redis_address,
        "required" if settings.auth_token is not None else "NOT required",
    )
    connector = asyncio.create_task(management.connect(), name="redis-connect")
    try:
        await server.serve()
    finally:
        connector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connector
        await management.close()


def main() -> None:
    """`python -m clipper.frontends.management`."""
    settings = ManagementFrontendSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvloop.run(run_management_frontend(settings))


if __name__ == "__main__":
    main()
