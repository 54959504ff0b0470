"""MLflow's gate, piece by piece (the platform tests in test_airflow_loop.py drive it whole,
with MLflow's own client, from a user's server and from the pipeline)."""

from __future__ import annotations

import json

import pytest

from mlops_ide.mlflow_gate import (
    ARTIFACT,
    REGISTRY,
    RUN_CHANGES,
    SEARCHES,
    api_path,
    caller_of,
    clean_path,
    recorded_as,
    request_json,
    run_id_of,
)


def test_a_run_is_recorded_as_the_caller_whatever_the_client_says() -> None:
    sent = {
        "experiment_id": "3",
        "user_id": "root",  # the client's own idea (its OS account)
        "tags": [{"key": "mlflow.user", "value": "bob"}, {"key": "mlflow.source.name", "value": "train.py"}],
    }

    body = json.loads(recorded_as(json.dumps(sent).encode(), "alice"))

    assert body["user_id"] == "alice"
    assert {"key": "mlflow.user", "value": "alice"} in body["tags"]
    assert {"key": "mlflow.user", "value": "bob"} not in body["tags"]
    assert {"key": "mlflow.source.name", "value": "train.py"} in body["tags"]


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'{"tags": "x"}'])
def test_a_body_mlflow_would_refuse_is_passed_on_for_mlflow_to_say_so(body: bytes) -> None:
    recorded = recorded_as(body, "alice")

    assert recorded == body or json.loads(recorded)["user_id"] == "alice"


def test_who_may_change_the_registry() -> None:
    assert caller_of({"kind": "user", "name": "alice", "admin": False}) == ("alice", False)
    assert caller_of({"kind": "user", "name": "ops", "admin": True}) == ("ops", True)
    assert caller_of({"kind": "service", "name": "pipeline"}) == ("service:pipeline", True)
    # another service is not the pipeline, and no user can take its name (':' is not in names)
    assert caller_of({"kind": "service", "name": "idle-culler"}) == ("service:idle-culler", False)


@pytest.mark.parametrize(
    "path",
    [
        "/services/mlflow/api/2.0/mlflow/registered-models/alias",
        "/services/mlflow/ajax-api/2.0/mlflow/registered-models/create",
        "/services/mlflow/api/2.0/mlflow/model-versions/create",
        "/services/mlflow/ajax-api/2.0/mlflow/model-versions/transition-stage",
        "/services/mlflow/api/3.0/mlflow/registered-models/delete",
    ],
)
def test_every_way_to_the_registry_is_seen(path: str) -> None:
    assert REGISTRY.search(api_path(path))


def test_run_changes_and_artifact_writes_are_seen() -> None:
    assert RUN_CHANGES.search(api_path("/services/mlflow/api/2.0/mlflow/runs/log-metric"))
    assert RUN_CHANGES.search(api_path("/services/mlflow/ajax-api/2.0/mlflow/runs/delete"))
    assert not RUN_CHANGES.search(api_path("/services/mlflow/api/2.0/mlflow/runs/create"))
    run = ARTIFACT.search("api/2.0/mlflow-artifacts/artifacts/1/abc123/artifacts/model/weights.h5")
    model = ARTIFACT.search("api/2.0/mlflow-artifacts/artifacts/1/models/m-42/artifacts/MLmodel")
    assert (run["id"], run["kind"]) == ("abc123", None)
    assert (model["id"], model["kind"]) == ("m-42", "models/")


@pytest.mark.parametrize(
    ("raw", "seen"),
    [
        (
            "/services/mlflow/api/2.0/mlflow/registered-model%73/alias",
            "/services/mlflow/api/2.0/mlflow/registered-models/alias",
        ),
        ("/services/mlflow//api/2.0/mlflow//runs/delet%65", "/services/mlflow/api/2.0/mlflow/runs/delete"),
        ("/services/mlflow/api/2.0/mlflow/registered-model%2573/alias", None),  # encoded twice
        ("/services/mlflow/api/2.0/mlflow/runs/../registered-models/alias", None),
    ],
)
def test_rules_see_the_path_mlflow_routes(raw: str, seen: str | None) -> None:
    """The review found `registered-model%73/alias` reached MLflow's handler past the rules."""
    assert clean_path(raw) == seen


def test_the_run_a_change_names_is_found_under_every_spelling_mlflow_takes() -> None:
    assert run_id_of(b'{"run_id": "a"}', {}) == "a"
    assert run_id_of(b'{"runId": "b"}', {}) == "b"  # protobuf's camel case
    assert run_id_of(json.dumps(json.dumps({"run_uuid": "c"})).encode(), {}) == "c"  # a JSON string of JSON
    assert run_id_of(b"", {"run_uuid": [b"d"]}) == "d"  # the UI's upload-artifact
    assert run_id_of(b'{"metrics": []}', {}) is None  # names none: the gate refuses
    assert request_json(b"[1]") == {} and request_json(b"not json") == {}


def test_searches_are_reads_and_nothing_else_is() -> None:
    for path in ("mlflow/runs/search", "mlflow/experiments/search", "mlflow/logged-models/search", "graphql"):
        assert SEARCHES.search("api/2.0/" + path), path
    for path in ("mlflow/experiments/set-experiment-tag", "mlflow/webhooks", "mlflow/traces/delete-traces"):
        assert not SEARCHES.search("api/2.0/" + path), path
