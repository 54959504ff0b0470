"""MLflow's gate, piece by piece (test_mlflow_gate_attacks.py drives it whole in front of a
real MLflow; test_airflow_loop.py with MLflow's own client, from a user's server and from the
pipeline)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from mlops_ide.hub_services import mlflow_routes
from mlops_ide.hub_services.mlflow_champion import (
    AliasRequest,
    BadAliasRequest,
    alias_request,
    is_champion,
    is_preview_experiment,
    why_not_champion,
    why_not_from_preview,
)
from mlops_ide.hub_services.mlflow_gate import (
    ARTIFACT,
    AmbiguousRequest,
    caller_of,
    recorded_as,
    request_json,
    routed_path,
    the_run_named,
)
from mlops_ide.hub_services.mlflow_routes import rule_for
from tests.support.platform_tools import tools_file_value

P = "/services/mlflow"


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
    # a preview's tasks: the registry too, but never `champion` (test_the_preview_identity_...)
    assert caller_of({"kind": "service", "name": "pipeline-preview"}) == ("service:pipeline-preview", True)
    # another service is not the pipeline, and no user can take its name (':' is not in names)
    assert caller_of({"kind": "service", "name": "idle-culler"}) == ("service:idle-culler", False)


def test_every_route_of_mlflow_is_classified_and_no_other() -> None:
    """MLflow's own route list (its FastAPI routers and Flask rules, with our prefix) against
    the table: a route an MLflow upgrade adds fails here until someone says who may call it."""
    listed = subprocess.run(
        [
            tools_file_value("MLOPS_IDE_AIRFLOW_PYTHON"),
            str(Path(__file__).parents[1] / "support" / "mlflow_route_list.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    theirs = {(method, route) for method, route in json.loads(listed.stdout) if route.startswith(P + "/")}
    ours = {(route.method, route.template) for route in mlflow_routes.ROUTES}
    # Flask answers HEAD for every GET route and OPTIONS for every route: the gate folds them
    theirs_folded = {(m, r) for m, r in theirs if m not in ("HEAD", "OPTIONS")}
    assert {(m, r) for m, r in theirs if m == "HEAD"} <= {("HEAD", r) for m, r in ours if m == "GET"}

    assert sorted(theirs_folded - ours) == [], "routes of MLflow's nobody classified in mlflow_routes.py"
    assert sorted(ours - theirs_folded) == [], "routes in mlflow_routes.py that MLflow does not have"


@pytest.mark.parametrize(
    ("method", "path", "rule"),
    [
        ("GET", "/api/2.0/mlflow/experiments/search", "READ"),
        ("POST", "/api/2.0/mlflow/runs/search", "READ"),  # a read MLflow sends as POST
        ("POST", "/graphql", "READ"),  # its mutations are searches too
        ("HEAD", "/ajax-api/2.0/mlflow/runs/get", "READ"),
        ("POST", "/api/2.0/mlflow/runs/create", "CREATE_RUN"),
        ("POST", "/ajax-api/2.0/mlflow/runs/set-tag", "OWN_RUN"),
        ("POST", "/ajax-api/2.0/mlflow/upload-artifact", "OWN_RUN"),
        ("PUT", "/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/model.pkl", "OWN_ARTIFACT"),
        ("PATCH", "/api/2.0/mlflow/logged-models/m-1", "OWN_LOGGED_MODEL"),
        ("POST", "/api/2.0/mlflow/experiments/delete", "PIPELINE"),
        ("POST", "/api/2.0/mlflow/registered-models/alias", "SET_ALIAS"),  # never champion for a preview
        ("POST", "/ajax-api/2.0/mlflow/registered-models/alias", "SET_ALIAS"),  # the UI's
        ("DELETE", "/api/2.0/mlflow/registered-models/alias", "PIPELINE"),
        ("GET", "/api/2.0/mlflow/registered-models/alias", "READ"),
        ("DELETE", "/ajax-api/2.0/mlflow/model-versions/delete", "PIPELINE"),
        ("DELETE", "/api/3.0/mlflow/datasets/search", "PIPELINE"),  # `search` as a dataset id
        ("GET", "/ajax-api/3.0/mlflow/gateway/secrets/list", "NOBODY"),
        ("POST", "/ajax-api/3.0/mlflow/assistant/message", "NOBODY"),
        ("POST", "/api/2.0/mlflow/runs/get", None),  # MLflow has GET only
        ("GET", "/api/2.0/mlflow/experiments/delete/search", None),
        ("POST", "/api/2.0/mlflow/runs/create/", None),
    ],
)
def test_each_request_gets_the_rule_of_the_route_mlflow_serves_it_with(
    method: str, path: str, rule: str | None
) -> None:
    assert rule_for(method, P + path) == rule


@pytest.mark.parametrize(
    "raw",
    [
        P + "/api/2.0/mlflow/experiments/delete%3F/search",  # `?`: MLflow routes .../delete
        P + "/api/2.0/mlflow/experiments/delete%3f/search",
        P + "/api/2.0/mlflow/registered-models/alias%23/search",  # `#`
        P + "/api/2.0/mlflow/model-versions/delete;/search",
        P + "/api/2.0/mlflow/model-versions/delete%3B/search",
        P + "/api/2.0/mlflow/runs/delete%20",
        P + "/api/2.0/mlflow/runs/delete%00",
        P + "/api/2.0/mlflow/runs/delete%0a",
        P + "/api/2.0/mlflow/registered-model%2573/alias",  # encoded twice
        P + "/api/2.0/mlflow/runs/../registered-models/alias",
        P + "/api/2.0/mlflow/runs/%2E%2E/registered-models/alias",
        P + "//api/2.0/mlflow/runs/delete",
        P + "/api/2.0/mlflow/runs/%ff",  # decodes to no character
        P + "/api/2.0/mlflow/runs/d\xe9lete",
        "/other/api/2.0/mlflow/runs/delete",
    ],
)
def test_a_path_that_is_not_one_plain_path_is_refused(raw: str) -> None:
    assert routed_path(raw) is None


def test_a_plain_path_is_routed_as_mlflow_decodes_it() -> None:
    assert (
        routed_path(P + "/api/2.0/mlflow/registered-model%73/alias")
        == P + "/api/2.0/mlflow/registered-models/alias"
    )
    assert routed_path(P + "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/a%2Bb") == (
        P + "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/a+b"
    )


def test_the_run_a_change_names_is_found_under_every_spelling_mlflow_takes() -> None:
    assert the_run_named(b'{"run_id": "a"}', {}) == "a"
    assert the_run_named(b'{"runId": "b"}', {}) == "b"  # protobuf's camel case
    assert (
        the_run_named(json.dumps(json.dumps({"run_uuid": "c"})).encode(), {}) == "c"
    )  # a JSON string of JSON
    assert the_run_named(b"", {"run_uuid": [b"d"]}) == "d"  # the UI's upload-artifact
    assert (
        the_run_named(b'{"run_id": "e", "run_uuid": "e"}', {"run_id": [b"e"]}) == "e"
    )  # one run, said thrice
    assert the_run_named(b'{"metrics": []}', {}) is None  # names none: the gate refuses
    assert request_json(b"[1]") == {} and request_json(b"not json") == {}


@pytest.mark.parametrize(
    ("body", "query"),
    [
        (b'{"run_id": "mine", "run_uuid": "theirs"}', {}),  # the handler reads run_uuid too
        (b'{"run_uuid": "theirs"}', {"run_id": [b"mine"]}),  # the review's set-tag
        (b"", {"run_id": [b"mine"], "run_uuid": [b"theirs"]}),  # the review's upload-artifact
        (b"", {"run_uuid": [b"mine", b"theirs"]}),
        (b'{"run_id": "mine", "run_id": "theirs"}', {}),  # a key twice: JSON parsers differ
        (b'{"run_id": ["theirs"]}', {}),
    ],
)
def test_a_request_that_names_two_runs_is_refused(body: bytes, query: dict) -> None:
    with pytest.raises(AmbiguousRequest):
        the_run_named(body, query)


def test_artifact_paths_name_their_run_or_logged_model() -> None:
    run = ARTIFACT.search("api/2.0/mlflow-artifacts/artifacts/1/abc123/artifacts/model/weights.h5")
    model = ARTIFACT.search("api/2.0/mlflow-artifacts/artifacts/1/models/m-42/artifacts/MLmodel")
    assert (run["id"], run["kind"]) == ("abc123", None)
    assert (model["id"], model["kind"]) == ("m-42", "models/")


def test_mlflows_graphql_sets_no_alias() -> None:
    """POST /graphql is READ: every mutation of MLflow's schema must be a search (an MLflow
    that adds one that writes, an alias above all, fails here until the gate checks it)."""
    program = (
        "from mlflow.server.graphql.graphql_schema_extensions import schema\n"
        "print(' '.join(sorted(schema.graphql_schema.mutation_type.fields)))"
    )
    listed = subprocess.run(
        [tools_file_value("MLOPS_IDE_AIRFLOW_PYTHON"), "-c", program],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert listed.stdout.split() == ["mlflowSearchDatasets", "mlflowSearchRuns", "testMutation"]


@pytest.mark.parametrize(
    ("name", "preview"),
    [
        ("preview/alice/lr", True),  # what the platform names a preview's experiment
        ("PREVIEW/alice/lr", True),  # a database without case takes it for the same name
        ("Preview/alice/lr", True),
        (" preview/alice/lr", True),
        ("preview/", True),
        ("cnn_skin_cancer", False),  # the tracked branch's workflow
        ("previews-report", False),
        ("preview", False),
        ("team/preview/alice", False),
        ("", False),
    ],
)
def test_a_preview_experiment_is_named_preview_slash(name: str, preview: bool) -> None:
    assert is_preview_experiment(name) is preview


@pytest.mark.parametrize(
    ("alias", "champion"),
    [("champion", True), ("Champion", True), ("CHAMPION", True), ("champion\n", True), ("challenger", False)],
)
def test_champion_is_recognised_as_a_store_without_case_would_match_it(alias: str, champion: bool) -> None:
    assert is_champion(alias) is champion


def test_an_alias_request_is_read_from_its_json_body_as_mlflow_reads_it() -> None:
    sent = {"name": "skin", "alias": "champion", "version": "3"}

    assert alias_request(request_json(json.dumps(sent).encode()), {}) == AliasRequest("skin", "champion", "3")
    double = json.dumps(json.dumps(sent)).encode()  # a JSON string of JSON: MLflow decodes it twice
    assert alias_request(request_json(double), {}) == AliasRequest("skin", "champion", "3")


@pytest.mark.parametrize(
    ("body", "query"),
    [
        # MLflow reads the body alone: a second version in the query is not read, so refused
        (b'{"name": "skin", "alias": "champion", "version": "1"}', {"version": [b"2"]}),
        (b'{"name": "skin", "alias": "staging", "version": "1"}', {"alias": [b"champion"]}),
        (b'{"name": "skin", "alias": "champion", "version": "1"}', {"name": [b"other"]}),
        (b'{"name": "skin", "alias": "champion", "version": 1}', {}),  # MLflow wants a string
        (b'{"name": "skin", "alias": "champion", "version": ["1", "2"]}', {}),
        (b'{"name": "skin", "alias": "champion"}', {}),
        (b"not json", {}),
    ],
)
def test_an_alias_request_mlflow_could_read_otherwise_is_refused(body: bytes, query: dict) -> None:
    with pytest.raises(BadAliasRequest):
        alias_request(request_json(body), query)


def test_an_alias_request_naming_a_version_twice_in_its_json_is_refused() -> None:
    with pytest.raises(AmbiguousRequest):
        request_json(b'{"name": "skin", "alias": "champion", "version": "1", "version": "2"}')


# MLflow's answers, as its REST API gives them: version 3 of `skin` made by a run in the tracked
# branch's experiment (what a preview branch made before previews had experiments records to),
# version 4 is `champion`.
MLFLOW_ANSWERS = {
    "api/2.0/mlflow/model-versions/get?name=skin&version=3": {"model_version": {"run_id": "r3"}},
    "api/2.0/mlflow/model-versions/get?name=skin&version=4": {
        "model_version": {"run_id": "r4", "aliases": ["champion"]}
    },
    "api/2.0/mlflow/runs/get?run_id=r3": {"run": {"info": {"experiment_id": "1"}}},
    "api/2.0/mlflow/experiments/get?experiment_id=1": {"experiment": {"name": "cnn_skin_cancer"}},
}


async def ask_mlflow(path: str) -> dict | None:
    return MLFLOW_ANSWERS.get(path)


def from_preview(method: str, route: str, request: dict, query: dict | None = None) -> str | None:
    path = f"api/2.0/mlflow/{route}"
    return asyncio.run(why_not_from_preview(ask_mlflow, method, path, request, query or {}))


def test_the_preview_identity_never_sets_champion_even_on_a_tracked_branch_experiments_version() -> None:
    request = {"name": "skin", "alias": "champion", "version": "3"}
    why = from_preview("POST", "registered-models/alias", request)
    assert why is not None
    assert "a preview cannot move `champion`" in why and "Merge the branch into the tracked branch" in why
    assert from_preview("POST", "registered-models/alias", {**request, "alias": "Champion "}) is not None
    # the pipeline identity: the experiment decides, as before (a tracked-branch run: allowed)
    assert asyncio.run(why_not_champion(ask_mlflow, "skin", "3")) is None


def test_the_preview_identity_sets_other_aliases_and_registers() -> None:
    assert (
        from_preview(
            "POST", "registered-models/alias", {"name": "skin", "alias": "challenger", "version": "3"}
        )
        is None
    )
    assert from_preview("POST", "model-versions/create", {"name": "skin", "source": "runs:/r3/model"}) is None
    assert from_preview("DELETE", "registered-models/alias", {"name": "skin", "alias": "challenger"}) is None
    assert from_preview("DELETE", "model-versions/delete", {"name": "skin", "version": "3"}) is None


def test_the_preview_identity_cannot_take_champion_away_either() -> None:
    assert from_preview("DELETE", "registered-models/alias", {"name": "skin", "alias": "champion"})
    assert from_preview("DELETE", "registered-models/alias", {"name": "skin"})  # unreadable: closed
    assert from_preview("DELETE", "model-versions/delete", {"name": "skin", "version": "4"})  # champion's
    assert from_preview("DELETE", "model-versions/delete", {"name": "skin", "version": "9"})  # unknown
    assert from_preview("DELETE", "registered-models/delete", {"name": "skin"})
    assert from_preview("POST", "registered-models/rename", {"name": "skin", "new_name": "old"})
    with pytest.raises(BadAliasRequest, match="in the JSON body only"):
        from_preview(
            "POST",
            "registered-models/alias",
            {"name": "skin", "alias": "x", "version": "3"},
            {"alias": [b"champion"]},
        )
