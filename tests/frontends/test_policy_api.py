"""The /admin model-selection calls against a real Redis: setting and reading a policy, several links per
app under a multi-model policy, and Clipper's one-model rules kept while the policy is the default."""

from __future__ import annotations

import httpx
import pytest
import redis.asyncio as aioredis

from clipper.config.store import ConfigStore, Db
from clipper.selection import POLICIES, make_policy
from tests.frontends.test_management_http import app_body, model_body, ok, post, rejected, snapshot

DEFAULT = "DefaultOutputSelectionPolicy"


async def two_models(client: httpx.AsyncClient, policy: str = "exp3", **params: object) -> None:
    """App `app` linked to `a` and `b` (doubles) under `policy`, set while only `a` was linked."""
    await ok(client, "add_app", app_body())
    for name in ("a", "b"):
        await ok(client, "add_model", model_body(name))
    await ok(client, "add_model_links", {"app_name": "app", "model_names": ["a"]})
    await ok(client, "set_app_policy", {"name": "app", "policy": policy, "params": params})
    await ok(client, "add_model_links", {"app_name": "app", "model_names": ["b"]})


async def policy_of(client: httpx.AsyncClient, app: str = "app") -> dict[str, object]:
    return dict((await ok(client, "get_app_policy", {"name": app})).json())


async def test_a_second_link_needs_a_multi_model_policy(client: httpx.AsyncClient) -> None:
    await ok(client, "add_app", app_body())
    for name in ("a", "b"):
        await ok(client, "add_model", model_body(name))
    await ok(client, "add_model_links", {"app_name": "app", "model_names": ["a"]})
    link_b = {"app_name": "app", "model_names": ["b"]}
    assert (
        await rejected(client, "add_model_links", link_b) == "A model with name a is already linked to 'app'."
    )
    r = await ok(client, "set_app_policy", {"name": "app", "policy": "exp3", "params": {"gamma": 0.2}})
    assert r.text == "Successfully set the policy of application 'app' to exp3"
    r = await ok(client, "add_model_links", link_b)
    assert r.text == "Successfully linked model with name 'b' to application 'app'"
    assert (await ok(client, "get_linked_models", {"app_name": "app"})).json() == ["a", "b"]
    info = (await ok(client, "get_application", {"name": "app"})).json()
    assert (info["linked_models"], info["policy"]) == (["a", "b"], "exp3")
    assert info["policy_params"]["gamma"] == 0.2  # normalised by the policy: defaults filled in too


async def test_links_under_a_multi_model_policy_keep_the_input_type_and_one_per_call(
    client: httpx.AsyncClient,
) -> None:
    await two_models(client)
    await ok(client, "add_model", model_body("s", input_type="strings"))
    await ok(client, "add_model", model_body("c"))
    text = await rejected(client, "add_model_links", {"app_name": "app", "model_names": ["s"]})
    assert text == (
        "Model with name 's' has incompatible input_type 'strings'. "
        "Requested app to link to has input_type 'doubles'."
    )
    text = await rejected(client, "add_model_links", {"app_name": "app", "model_names": ["c", "s"]})
    assert text.startswith("Model with name 's' has incompatible input_type")
    two = {"app_name": "app", "model_names": ["c", "a"]}
    assert (await rejected(client, "add_model_links", two)).startswith("Link one model per call")
    text = await rejected(client, "add_model_links", {"app_name": "app", "model_names": ["a"]})
    assert text == "The model with name 'a' is already linked to 'app'"


async def test_get_app_policy_gives_params_and_weights_of_the_linked_models(
    client: httpx.AsyncClient,
) -> None:
    await ok(client, "add_app", app_body())
    assert await policy_of(client) == {"policy": DEFAULT, "params": {}}  # no linked model: no weights
    await ok(client, "add_model", model_body("a"))
    await ok(client, "add_model_links", {"app_name": "app", "model_names": ["a"]})
    assert await policy_of(client) == {"policy": DEFAULT, "params": {}, "weights": {"a": 1.0}}
    await ok(client, "set_app_policy", {"name": "app", "policy": "shadow", "params": {"primary": "a"}})
    await ok(client, "add_model", model_body("b"))
    await ok(client, "add_model_links", {"app_name": "app", "model_names": ["b"]})
    weights = {"a": 9, "b": 1}
    await ok(client, "set_app_policy", {"name": "app", "policy": "split", "params": {"weights": weights}})
    got = await policy_of(client)
    assert (got["policy"], got["params"]) == ("split", {"weights": {"a": 0.9, "b": 0.1}})
    assert got["weights"] == pytest.approx({"a": 0.9, "b": 0.1})
    text = await rejected(client, "get_app_policy", {"name": "nope"})
    assert text == "No app with name 'nope' exists."


async def test_weights_follow_the_state_frontends_learn(
    client: httpx.AsyncClient, store: ConfigStore
) -> None:
    """The global state a frontend writes (exp4's learned weights) is what get_app_policy reports."""
    await two_models(client, "exp4")
    before = (await policy_of(client))["weights"]
    assert before == pytest.approx({"a": 0.5, "b": 0.5})
    policy = make_policy("exp4", (await policy_of(client))["params"])  # type: ignore[arg-type]
    models = ["a", "b"]
    for _ in range(3):
        await store.update_selection_state(
            "app",
            "0",
            lambda old: policy.update(
                old or policy.initial_state(models), models, None, {"a": 1.0, "b": 0.0}
            ),
        )
    after = (await policy_of(client))["weights"]
    assert isinstance(after, dict) and after["a"] > 0.8 > 0.2 > after["b"]


def policy_body(policy: str, name: str = "app", **params: object) -> dict[str, object]:
    return {"name": name, "policy": policy, "params": params}


INVALID = "params: invalid for policy "


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (policy_body("bandit"), "Error parsing JSON: policy: unknown policy 'bandit'"),
        (policy_body("exp3") | {"params": []}, "Error parsing JSON: params: Input should be"),
        ({"name": "app"}, "Error parsing JSON: JSON object does not have required key: policy"),
        (policy_body("exp3", gamma=2), INVALID + "exp3: gamma:"),
        (policy_body("exp3", gama=0.1), INVALID + "exp3: gama:"),
        (policy_body("split", weights={"a": 1, "c": 1}),
         INVALID + "split: weights.c: 'c' is not a model linked to this app (linked: a, b)"),
        (policy_body("shadow"), INVALID + "shadow: primary: required"),
        (policy_body(DEFAULT), "policy: DefaultOutputSelectionPolicy serves one model and application 'app' "
                               "is linked to 2 (a, b); unlink all but one first"),
        (policy_body("exp3", name="nope"), "No app with name 'nope' exists."),
    ],
)  # fmt: skip
async def test_set_app_policy_refuses_and_changes_nothing(
    client: httpx.AsyncClient, redis_url: str, body: dict[str, object], expected: str
) -> None:
    await two_models(client)
    before = await snapshot(redis_url)
    text = await rejected(client, "set_app_policy", body)
    assert text.startswith(expected), text
    assert await snapshot(redis_url) == before


async def test_unlinking_a_model_the_policy_names_is_refused_until_the_policy_changes(
    client: httpx.AsyncClient, redis_url: str
) -> None:
    await two_models(client, "shadow", primary="a")
    before = await snapshot(redis_url)
    r = await post(client, "delete_model_links", {"app_name": "app", "model_names": ["a"]})
    assert r.status_code == 409 and r.headers["content-type"].startswith("text/plain")
    assert r.text.startswith(
        "Cannot unlink a from application 'app': the params of its policy shadow need it"
    )
    assert r.text.endswith("change the policy first (set_app_policy), then unlink")
    assert await snapshot(redis_url) == before
    await ok(client, "delete_model_links", {"app_name": "app", "model_names": ["b"]})  # a shadow may go
    await ok(client, "add_model_links", {"app_name": "app", "model_names": ["b"]})
    await ok(client, "set_app_policy", {"name": "app", "policy": "shadow", "params": {"primary": "b"}})
    await ok(client, "delete_model_links", {"app_name": "app", "model_names": ["a"]})
    assert (await ok(client, "get_linked_models", {"app_name": "app"})).json() == ["b"]


async def test_back_on_the_default_policy_the_app_is_clippers_again(
    client: httpx.AsyncClient, redis_url: str
) -> None:
    await ok(client, "add_app", app_body())
    apps = aioredis.Redis.from_url(redis_url, db=5, decode_responses=True)
    clippers = await apps.hgetall("app")
    await ok(client, "add_model", model_body("a"))
    await ok(client, "add_model_links", {"app_name": "app", "model_names": ["a"]})
    await ok(client, "set_app_policy", {"name": "app", "policy": "exp4", "params": {"confidence": 0.6}})
    assert set(await apps.hgetall("app")) == {*clippers, "policy_params"}
    await ok(client, "set_app_policy", {"name": "app", "policy": DEFAULT})
    assert await apps.hgetall("app") == clippers
    await apps.aclose()
    await ok(client, "add_model", model_body("b"))
    text = await rejected(client, "add_model_links", {"app_name": "app", "model_names": ["b"]})
    assert text == "A model with name a is already linked to 'app'."


async def test_a_new_policy_starts_unlearned_new_params_keep_what_was_learned(
    client: httpx.AsyncClient, store: ConfigStore
) -> None:
    await two_models(client, "exp3")
    for uid in ("0", "17"):
        await store.update_selection_state("app", uid, lambda old: {"weights": {"a": 0.99, "b": 0.01}})
    await ok(client, "set_app_policy", {"name": "app", "policy": "exp3", "params": {"gamma": 0.3}})
    assert await store.get_selection_state("app", "17") == {"weights": {"a": 0.99, "b": 0.01}}
    await ok(client, "set_app_policy", {"name": "app", "policy": "exp4"})
    assert await store.get_selection_state("app", "0") is None
    assert await store.get_selection_state("app", "17") is None
    assert await store.get_state("app") == "-1.0"
    await ok(client, "delete_app", {"name": "app"})
    assert await store.db(Db.STATE).dbsize() == 0


async def test_openapi_documents_the_policy_calls(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    body = paths["/admin/set_app_policy"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["policy"]["enum"] == list(POLICIES)
    assert set(body["required"]) == {"name", "policy"} and body["additionalProperties"] is False
    assert "409" in paths["/admin/delete_model_links"]["post"]["responses"]
    assert {"400", "503"} <= set(paths["/admin/get_app_policy"]["post"]["responses"])
