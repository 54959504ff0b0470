"""MLflow's gate, piece by piece (the platform tests in test_airflow_loop.py drive it whole,
with MLflow's own client, from a user's server and from the pipeline)."""

from __future__ import annotations

import json

import pytest

from mlops_ide.mlflow_gate import ARTIFACT, REGISTRY, RUN_CHANGES, api_path, caller_of, recorded_as


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
