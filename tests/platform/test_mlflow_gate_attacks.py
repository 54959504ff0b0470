"""MLflow's gate on a running platform, attacked as a user with a bad idea would: the path
it authorizes is the path MLflow routes, and the run it checks is the run MLflow changes.
Every attack here worked before the gate matched MLflow's own route table (the review of
2026-12-04): each asserts the refusal and that the pipeline's objects are as they were."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlencode

import pytest

from tests.support.local_platform import PlatformConfig, RunningPlatform

API = "/services/mlflow/api/2.0/mlflow"
AJAX = "/services/mlflow/ajax-api/2.0/mlflow"


class Caller:
    """Raw HTTP to the gate with a hub token: the path goes out exactly as written (no
    client tidies `%3F` or `..`)."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token

    def send(
        self, method: str, path: str, body: dict | bytes | None = None, /, **query: str
    ) -> tuple[int, dict]:
        if query:
            path += "?" + urlencode(query)
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        connection.request(method, path, data, headers)
        response = connection.getresponse()
        text = response.read()
        connection.close()
        try:
            answer = json.loads(text) if text else {}
        except ValueError:
            answer = {"text": text.decode(errors="replace")}
        return response.status, answer


PLATFORM = PlatformConfig("gate", {"MLOPS_IDE_SERVICES": "mlflow"}, timeout=120, stops_cleanly=True)


def user_token(platform: RunningPlatform, username: str) -> str:
    """A hub token of `username` for MLflow alone, made from their login, as /hub/token does."""
    session = platform.login(username)
    made = session.post(
        f"{platform.url}/hub/api/users/{username}/tokens",
        json={"scopes": ["access:services!service=mlflow"], "note": "test"},
        headers={"X-XSRFToken": session.cookies.get("_xsrf")},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    return made.json()["token"]


@pytest.fixture(scope="module")
def pipeline(platform: RunningPlatform) -> Caller:
    token = (platform.home / "airflow-auth" / "mlflow_token").read_text().strip()
    return Caller(int(platform.env["MLOPS_IDE_MLFLOW_PORT"]), token)


@pytest.fixture(scope="module")
def alice(platform: RunningPlatform) -> Caller:
    return Caller(int(platform.env["MLOPS_IDE_MLFLOW_PORT"]), user_token(platform, "alice"))


@pytest.fixture(scope="module")
def theirs(pipeline: Caller) -> dict:
    """The pipeline's experiment, run, registered model, version 1 and its champion alias."""
    status, experiment = pipeline.send("POST", f"{API}/experiments/create", {"name": "pipeline-exp"})
    assert status == 200, experiment
    experiment_id = experiment["experiment_id"]
    status, run = pipeline.send("POST", f"{API}/runs/create", {"experiment_id": experiment_id})
    assert status == 200, run
    run_id = run["run"]["info"]["run_id"]
    assert pipeline.send("POST", f"{API}/registered-models/create", {"name": "skin"})[0] == 200
    source = f"{run['run']['info']['artifact_uri']}/model"
    status, version = pipeline.send(
        "POST", f"{API}/model-versions/create", {"name": "skin", "source": source, "run_id": run_id}
    )
    assert status == 200, version
    alias = {"name": "skin", "alias": "champion", "version": "1"}
    assert pipeline.send("POST", f"{API}/registered-models/alias", alias)[0] == 200
    return {"experiment_id": experiment_id, "run_id": run_id}


@pytest.fixture(scope="module")
def mine(alice: Caller, theirs: dict) -> str:
    """A run of alice's own, in the pipeline's experiment (users may add runs anywhere)."""
    status, run = alice.send("POST", f"{API}/runs/create", {"experiment_id": theirs["experiment_id"]})
    assert status == 200, run
    assert run["run"]["info"]["user_id"] == "alice"
    return run["run"]["info"]["run_id"]


def still_as_the_pipeline_left_it(pipeline: Caller, theirs: dict) -> None:
    status, experiment = pipeline.send("GET", f"{API}/experiments/get", experiment_id=theirs["experiment_id"])
    assert status == 200 and experiment["experiment"]["lifecycle_stage"] == "active"
    status, champion = pipeline.send("GET", f"{API}/registered-models/alias", name="skin", alias="champion")
    assert status == 200 and champion["model_version"]["version"] == "1"
    status, run = pipeline.send("GET", f"{API}/runs/get", run_id=theirs["run_id"])
    assert status == 200 and run["run"]["info"]["lifecycle_stage"] == "active"
    data = run["run"]["data"]
    assert "tags" not in data or all(tag["key"] != "hacked" for tag in data["tags"])
    assert "params" not in data and "metrics" not in data


@pytest.mark.parametrize("trick", ["%3F/search", "%3f/search", "%23/search", ";/search", "%3B/search", "%20"])
@pytest.mark.parametrize(
    ("method", "route", "body"),
    [
        ("POST", "experiments/delete", lambda t: {"experiment_id": t["experiment_id"]}),
        ("POST", "registered-models/alias", lambda t: {"name": "skin", "alias": "champion", "version": "9"}),
        ("DELETE", "registered-models/alias", lambda t: {"name": "skin", "alias": "champion"}),
        ("DELETE", "model-versions/delete", lambda t: {"name": "skin", "version": "1"}),
        ("POST", "runs/delete", lambda t: {"run_id": t["run_id"]}),
    ],
)
def test_an_encoded_path_reaches_no_write(
    alice: Caller, pipeline: Caller, theirs: dict, trick: str, method: str, route: str, body
) -> None:
    """The review's `experiments/delete%3F/search`: the gate saw a search, MLflow a delete."""
    status, answer = alice.send(method, f"{API}/{route}{trick}", body(theirs))

    assert status == 400, answer
    assert "plain paths" in answer["message"]
    still_as_the_pipeline_left_it(pipeline, theirs)


@pytest.mark.parametrize(
    ("route", "body", "query"),
    [
        (
            "runs/set-tag",
            lambda t, m: {"run_uuid": t, "key": "hacked", "value": "1"},
            lambda t, m: {"run_id": m},
        ),
        ("runs/set-tag", lambda t, m: {"run_id": m, "run_uuid": t, "key": "hacked", "value": "1"}, None),
        ("runs/log-parameter", lambda t, m: {"run_id": m, "run_uuid": t, "key": "lr", "value": "9"}, None),
        (
            "runs/log-metric",
            lambda t, m: {"run_uuid": t, "key": "acc", "value": 1.0, "timestamp": 1},
            lambda t, m: {"run_id": m},
        ),
        ("runs/update", lambda t, m: {"run_id": m, "run_uuid": t, "status": "FAILED"}, None),
    ],
)
def test_a_change_naming_two_runs_is_refused(
    alice: Caller, pipeline: Caller, theirs: dict, mine: str, route: str, body, query
) -> None:
    """The review's `set-tag?run_id=<mine>` with `run_uuid` of the pipeline's run in the body."""
    extra = query(theirs["run_id"], mine) if query else {}
    status, answer = alice.send("POST", f"{API}/{route}", body(theirs["run_id"], mine), **extra)

    assert status == 400, answer
    assert "different runs" in answer["message"]
    still_as_the_pipeline_left_it(pipeline, theirs)


def test_the_uis_upload_naming_two_runs_writes_nothing(
    alice: Caller, pipeline: Caller, theirs: dict, mine: str
) -> None:
    status, answer = alice.send(
        "POST",
        f"{AJAX}/upload-artifact",
        b"not the model",
        run_id=mine,
        run_uuid=theirs["run_id"],
        path="model/weights.bin",
    )

    assert status == 400, answer
    listed = pipeline.send("GET", f"{API}/artifacts/list", run_id=theirs["run_id"], path="model")[1]
    assert "files" not in listed


def test_a_user_changes_their_own_run_and_the_pipeline_its_registry(
    alice: Caller, pipeline: Caller, theirs: dict, mine: str
) -> None:
    """The happy side of the same routes: nothing above is refused for being a write."""
    assert alice.send("POST", f"{API}/runs/set-tag", {"run_id": mine, "key": "note", "value": "ok"})[0] == 200
    assert (
        alice.send("POST", f"{API}/runs/log-parameter", {"run_uuid": mine, "key": "lr", "value": "3e-3"})[0]
        == 200
    )
    upload = alice.send("POST", f"{AJAX}/upload-artifact", b"weights", run_uuid=mine, path="model/w.bin")
    assert upload[0] == 200, upload
    run = alice.send("GET", f"{API}/runs/get", run_id=mine)[1]
    assert {"key": "note", "value": "ok"} in run["run"]["data"]["tags"]
    alias = {"name": "skin", "alias": "staging", "version": "1"}
    assert pipeline.send("POST", f"{API}/registered-models/alias", alias)[0] == 200


def test_a_user_may_not_change_the_pipelines_run_under_any_name(
    alice: Caller, pipeline: Caller, theirs: dict
) -> None:
    for key in ("run_id", "run_uuid", "runId"):
        status, answer = alice.send(
            "POST", f"{API}/runs/set-tag", {key: theirs["run_id"], "key": "hacked", "value": "1"}
        )
        assert status == 403 and "service:pipeline" in answer["message"], answer
    still_as_the_pipeline_left_it(pipeline, theirs)


def test_what_mlflow_has_no_route_for_or_the_platform_does_not_offer_is_refused_to_everyone(
    alice: Caller, pipeline: Caller
) -> None:
    assert pipeline.send("GET", "/services/mlflow/ajax-api/3.0/mlflow/gateway/secrets/list")[0] == 403
    assert pipeline.send("POST", "/services/mlflow/ajax-api/3.0/mlflow/assistant/message", {})[0] == 403
    assert alice.send("POST", f"{API}/runs/get", {})[0] == 404  # MLflow serves runs/get as GET only
    assert alice.send("GET", "/services/mlflow/api/2.0/mlflow/no-such-thing")[0] == 404
    assert alice.send("GET", f"{API}/experiments/search", max_results="1")[0] == 200


# `champion` and previews (issue 29): a preview's runs record to the experiment named after its
# branch, `preview/<person>/<topic>`; the gate keeps `champion` (what serving loads) from their
# versions, whoever asks, the pipeline included (a preview's DAGs hold its token).
SHOP = "shop"


@pytest.fixture(scope="module")
def shop(pipeline: Caller) -> dict:
    """Versions of one model: 1 and 2 from a run of the tracked branch's experiment, 3 from a
    preview's, 4 from an experiment named `PREVIEW/...`, 5 from no run; `champion` on 1."""
    versions = {}
    assert pipeline.send("POST", f"{API}/registered-models/create", {"name": SHOP})[0] == 200
    for key, experiment in [
        ("main", "cnn_skin_cancer"),
        ("main", "cnn_skin_cancer"),
        ("preview", "preview/alice/lr"),
        ("capitals", "PREVIEW/alice/caps"),
    ]:
        status, found = pipeline.send("GET", f"{API}/experiments/get-by-name", experiment_name=experiment)
        if status != 200:
            status, found = pipeline.send("POST", f"{API}/experiments/create", {"name": experiment})
            assert status == 200, found
        experiment_id = found.get("experiment_id") or found["experiment"]["experiment_id"]
        status, run = pipeline.send("POST", f"{API}/runs/create", {"experiment_id": experiment_id})
        assert status == 200, run
        info = run["run"]["info"]
        created = {"name": SHOP, "source": f"{info['artifact_uri']}/model", "run_id": info["run_id"]}
        status, version = pipeline.send("POST", f"{API}/model-versions/create", created)
        assert status == 200, version
        versions.setdefault(key, []).append(version["model_version"]["version"])
    status, version = pipeline.send(
        "POST", f"{API}/model-versions/create", {"name": SHOP, "source": "s3://b/m"}
    )
    assert status == 200 and version["model_version"]["run_id"] == "", version
    versions["no run"] = [version["model_version"]["version"]]
    assert versions == {"main": ["1", "2"], "preview": ["3"], "capitals": ["4"], "no run": ["5"]}
    assert set_alias(pipeline, "champion", "1")[0] == 200
    return versions


def set_alias(caller: Caller, alias: str, version: str, route: str = API, **query: str) -> tuple[int, dict]:
    return caller.send(
        "POST",
        f"{route}/registered-models/alias",
        {"name": SHOP, "alias": alias, "version": version},
        **query,
    )


def champion_of_shop(pipeline: Caller) -> str | None:
    status, found = pipeline.send("GET", f"{API}/registered-models/alias", name=SHOP, alias="champion")
    return found["model_version"]["version"] if status == 200 else None


def test_champion_moves_between_versions_of_the_tracked_branchs_runs(pipeline: Caller, shop: dict) -> None:
    assert set_alias(pipeline, "champion", "2")[0] == 200
    assert champion_of_shop(pipeline) == "2"
    assert set_alias(pipeline, "champion", "1", AJAX)[0] == 200  # the UI's route
    assert champion_of_shop(pipeline) == "1"


def test_a_preview_version_may_get_any_alias_but_champion(pipeline: Caller, shop: dict) -> None:
    assert set_alias(pipeline, "challenger", "3")[0] == 200

    status, answer = set_alias(pipeline, "champion", "3")

    assert status == 403, answer
    assert "preview experiment 'preview/alice/lr'" in answer["message"]
    assert "merge the preview branch into the tracked branch" in answer["message"]
    assert champion_of_shop(pipeline) == "1"


@pytest.mark.parametrize("route", [API, AJAX])
@pytest.mark.parametrize(
    ("alias", "version"), [("champion", "3"), ("champion", "4"), ("Champion", "3"), ("CHAMPION", "4")]
)
def test_champion_is_refused_for_a_preview_version_however_spelled(
    pipeline: Caller, shop: dict, route: str, alias: str, version: str
) -> None:
    """`PREVIEW/...` and `Champion`: a database that compares without case (MySQL) would take
    them for `preview/...` and `champion`; the gate does too."""
    status, answer = set_alias(pipeline, alias, version, route)

    assert status == 403, answer
    assert "preview experiment" in answer["message"]
    assert champion_of_shop(pipeline) == "1"


@pytest.fixture(scope="module")
def preview_identity(platform: RunningPlatform) -> Caller:
    """A preview's tasks (hub service `pipeline-preview`): the token Airflow renders for them."""
    token = (platform.home / "airflow-auth" / "mlflow_preview_token").read_text().strip()
    return Caller(int(platform.env["MLOPS_IDE_MLFLOW_PORT"]), token)


def test_the_preview_identity_never_moves_champion_even_to_a_tracked_branch_version(
    pipeline: Caller, preview_identity: Caller, shop: dict
) -> None:
    """A preview branch whose code records to the tracked branch's experiment (made before
    previews had their own): its versions look like main's, its identity says what it is."""
    refused = {
        "set": set_alias(preview_identity, "champion", "2"),
        "set by the UI's route": set_alias(preview_identity, "Champion", "2", AJAX),
        "delete": preview_identity.send(
            "DELETE", f"{API}/registered-models/alias", {"name": SHOP, "alias": "champion"}
        ),
        "delete champion's version": preview_identity.send(
            "DELETE", f"{API}/model-versions/delete", {"name": SHOP, "version": "1"}
        ),
        "rename the model": preview_identity.send(
            "POST", f"{API}/registered-models/rename", {"name": SHOP, "new_name": "old-shop"}
        ),
    }
    for what, (status, answer) in refused.items():
        assert status == 403 and "a preview cannot move `champion`" in answer["message"], (what, answer)
    assert "Merge the branch into the tracked branch" in refused["set"][1]["message"]
    assert champion_of_shop(pipeline) == "1"


def test_the_preview_identity_logs_registers_and_sets_other_aliases(
    pipeline: Caller, preview_identity: Caller, shop: dict
) -> None:
    experiment = "preview/alice/lr"
    status, found = preview_identity.send("GET", f"{API}/experiments/get-by-name", experiment_name=experiment)
    assert status == 200, found
    status, run = preview_identity.send(
        "POST", f"{API}/runs/create", {"experiment_id": found["experiment"]["experiment_id"]}
    )
    assert status == 200 and run["run"]["info"]["user_id"] == "service:pipeline-preview", run
    info = run["run"]["info"]
    created = {"name": SHOP, "source": f"{info['artifact_uri']}/model", "run_id": info["run_id"]}
    status, version = preview_identity.send("POST", f"{API}/model-versions/create", created)
    assert status == 200, version
    assert set_alias(preview_identity, "challenger", version["model_version"]["version"])[0] == 200
    assert set_alias(preview_identity, "challenger", "2")[0] == 200  # a tracked-branch version too
    assert champion_of_shop(pipeline) == "1"


def test_the_preview_identity_changes_no_run_but_its_own(
    pipeline: Caller, preview_identity: Caller, theirs: dict
) -> None:
    """Serving loads `champion`'s version from its run's files: a preview may not overwrite
    or delete them, nor touch the run, as a user may not (the hostile review's F1)."""
    run = theirs["run_id"]
    refused = {
        "set a tag": preview_identity.send(
            "POST", f"{API}/runs/set-tag", {"run_id": run, "key": "hacked", "value": "1"}
        ),
        "delete the run": preview_identity.send("POST", f"{API}/runs/delete", {"run_id": run}),
        "upload into its model": preview_identity.send(
            "POST", f"{AJAX}/upload-artifact", b"not the model", run_uuid=run, path="model/weights.bin"
        ),
    }
    for what, (status, answer) in refused.items():
        assert status == 403 and "service:pipeline" in answer["message"], (what, answer)
    still_as_the_pipeline_left_it(pipeline, theirs)
    listed = pipeline.send("GET", f"{API}/artifacts/list", run_id=run, path="model")[1]
    assert "files" not in listed


def test_champion_is_refused_for_a_version_registered_from_no_run(pipeline: Caller, shop: dict) -> None:
    status, answer = set_alias(pipeline, "champion", "5")

    assert status == 403, answer
    assert "registered from no run" in answer["message"]
    assert champion_of_shop(pipeline) == "1"


@pytest.mark.parametrize(
    ("raw", "query"),
    [
        # a second version in the query: MLflow reads the body alone; refused, not guessed
        (lambda v: {"name": SHOP, "alias": "champion", "version": v["preview"][0]}, {"version": "1"}),
        (lambda v: {"name": SHOP, "alias": "champion", "version": "1"}, {"version": "3"}),
        (lambda v: {"name": SHOP, "alias": "challenger", "version": "1"}, {"alias": "champion"}),
        # the same key twice: JSON parsers differ on which wins
        (lambda v: b'{"name": "shop", "alias": "champion", "version": "1", "version": "3"}', {}),
        (lambda v: b'{"name": "shop", "alias": "champion", "alias": "challenger", "version": "3"}', {}),
    ],
)
def test_an_alias_request_that_says_two_things_is_refused(
    pipeline: Caller, shop: dict, raw, query: dict
) -> None:
    status, answer = pipeline.send("POST", f"{API}/registered-models/alias", raw(shop), **query)

    assert status == 400, answer
    assert champion_of_shop(pipeline) == "1"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        # encoded paths that decode to the alias route: the gate checks what MLflow routes
        (f"{API}/registered-model%73/alias", {"name": SHOP, "alias": "champion", "version": "3"}),
        (f"{API}/registered-models%2Falias", {"name": SHOP, "alias": "champion", "version": "3"}),
        # versions MLflow reads as 3 (int("03"), int(" 3"))
        (f"{API}/registered-models/alias", {"name": SHOP, "alias": "champion", "version": "03"}),
        (f"{API}/registered-models/alias", {"name": SHOP, "alias": "champion", "version": " 3"}),
        # a JSON string of JSON, which MLflow decodes twice
        (
            f"{API}/registered-models/alias",
            json.dumps(json.dumps({"name": SHOP, "alias": "champion", "version": "3"})).encode(),
        ),
    ],
)
def test_a_disguised_request_for_champion_on_a_preview_version_is_refused(
    pipeline: Caller, shop: dict, path: str, body
) -> None:
    status, answer = pipeline.send("POST", path, body)

    assert status == 403, answer
    assert "preview experiment" in answer["message"]
    assert champion_of_shop(pipeline) == "1"


def test_a_user_moves_no_alias_at_all(alice: Caller, pipeline: Caller, shop: dict) -> None:
    status, answer = set_alias(alice, "champion", "2")

    assert status == 403 and "the pipeline's or a hub admin's" in answer["message"], answer
    assert champion_of_shop(pipeline) == "1"
