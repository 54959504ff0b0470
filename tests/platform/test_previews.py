"""Previews on the real platform (issue 29): people push `preview/<you>/<topic>` from their own
servers through the git service, and a real Airflow lists their copy of the DAGs, renamed,
paused and tagged; a preview's run records to its own MLflow experiment and cannot move
`champion`; two people's previews of one DAG do not clash; the limit refuses the fourth;
deleting the branch takes its DAGs away and leaves its runs readable.
One platform for the module; the tests build on each other in file order."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import zlib
from pathlib import Path

import pytest
import requests

from tests.support.airflow_api import AirflowAPI
from tests.support.gitrepos import git, user_commit
from tests.support.local_platform import PlatformConfig, RunningPlatform, wait_for

WORKFLOW = "cnn_skin_cancer_workflow"
MODEL = "skin_cancer_cnn"
PLATFORM = PlatformConfig("previews", {"MLOPS_IDE_SERVICES": "airflow,mlflow,serving"}, timeout=240)


@pytest.fixture(scope="module")
def airflow(platform: RunningPlatform) -> AirflowAPI:
    api = AirflowAPI(platform.airflow_url, platform.airflow_password)
    wait_for(lambda: api.dag(WORKFLOW), 120, "the seeded DAGs to be parsed")
    return api


def clone_of(platform: RunningPlatform, user: str) -> Path:
    """The user's clone, made by the startup hook when their server started."""
    platform.open_vscode(platform.login(user), user)
    return platform.home / "homes" / user / "pipelines"


@pytest.fixture(scope="module")
def alice(platform: RunningPlatform) -> Path:
    return clone_of(platform, "alice")


@pytest.fixture(scope="module")
def bob(platform: RunningPlatform) -> Path:
    return clone_of(platform, "bob")


def edited_workflow(clone: Path) -> str:
    """The workflow DAG with one model to train instead of three: what someone tries."""
    text = (clone / "dags" / f"{WORKFLOW}.py").read_text()
    edited = text.replace('KINDS = ("basic_cnn", "crossval", "resnet50")', 'KINDS = ("basic_cnn",)')
    assert edited != text, "the workflow DAG no longer names its kinds as this test expects"
    return edited


def push(platform: RunningPlatform, user: str, clone: Path, *refspec: str) -> subprocess.CompletedProcess:
    """`git push origin <refspec>` in the user's VS Code terminal, as them."""
    return platform.terminal(user, "git", "push", "origin", *refspec, cwd=clone)


def preview(platform: RunningPlatform, user: str, clone: Path, topic: str) -> tuple[str, str]:
    """Push the edited workflow to preview/<user>/<topic>: the commit and the push's output."""
    git(clone, "checkout", "--quiet", "-B", f"try-{topic}", "origin/main")
    commit = user_commit(clone, {f"dags/{WORKFLOW}.py": edited_workflow(clone)}, f"only basic_cnn ({topic})")
    pushed = push(platform, user, clone, f"HEAD:preview/{user}/{topic}")
    assert pushed.returncode == 0, pushed.stderr
    return commit, pushed.stderr


def tags(dag: dict) -> set[str]:
    return {tag["name"] for tag in dag["tags"]}


def test_a_preview_of_the_edited_workflow_is_listed_renamed_paused_and_tagged(
    platform: RunningPlatform, airflow: AirflowAPI, alice: Path
) -> None:
    main_before = airflow.dag(WORKFLOW)
    commit, said = preview(platform, "alice", alice, "lr")

    link = f"{platform.url}/services/airflow/dags/{WORKFLOW}__alice_lr"
    assert f"preview: {WORKFLOW}__alice_lr (paused) {link}" in said, said
    dag = airflow.dag(f"{WORKFLOW}__alice_lr")  # listed when the push returns
    assert dag["is_paused"] is True
    assert {"preview/alice/lr", "by:alice"} <= tags(dag)
    assert dag["bundle_name"] == "preview-1" and dag["bundle_version"] == commit
    main_after = airflow.dag(WORKFLOW)
    assert (main_after["is_paused"], tags(main_after), main_after["bundle_name"]) == (
        False,
        tags(main_before),
        "pipelines",
    )


def test_two_people_preview_the_same_dag_without_clashing(
    platform: RunningPlatform, airflow: AirflowAPI, alice: Path, bob: Path
) -> None:
    commit, said = preview(platform, "bob", bob, "lr")

    assert f"preview: {WORKFLOW}__bob_lr (paused)" in said, said
    bobs, alices = airflow.dag(f"{WORKFLOW}__bob_lr"), airflow.dag(f"{WORKFLOW}__alice_lr")
    assert (bobs["bundle_name"], bobs["bundle_version"]) == ("preview-2", commit)
    assert "by:bob" in tags(bobs) and "by:alice" in tags(alices) and alices["bundle_name"] == "preview-1"


def test_bob_cannot_push_to_or_delete_alices_preview(platform: RunningPlatform, bob: Path) -> None:
    pushed = push(platform, "bob", bob, "--force", "HEAD:preview/alice/lr")
    deleted = push(platform, "bob", bob, ":preview/alice/lr")

    assert pushed.returncode != 0 and "is alice's preview" in pushed.stderr, pushed.stderr
    assert deleted.returncode != 0 and "is alice's preview" in deleted.stderr, deleted.stderr


@pytest.fixture(scope="module")
def preview_run(airflow: AirflowAPI) -> dict:
    """A run of alice's preview, unpaused and triggered as anyone would, on small images."""
    dag_id = f"{WORKFLOW}__alice_lr"
    unpaused = airflow.session.patch(
        f"{airflow.url}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=30
    )
    assert unpaused.status_code == 200, unpaused.text
    started = airflow.session.post(
        f"{airflow.url}/api/v2/dags/{dag_id}/dagRuns",
        json={"logical_date": None, "conf": {"epochs": 1, "image_size": 16}},
        timeout=30,
    )
    assert started.status_code == 200, started.text
    return airflow.wait_for_run(dag_id, started.json()["dag_run_id"], timeout=600)


def mlflow(platform: RunningPlatform) -> tuple[str, dict[str, str]]:
    """MLflow's API through its gate with the pipeline's token: what Airflow's tasks hold."""
    token = (platform.home / "airflow-auth" / "mlflow_token").read_text().strip()
    api = f"http://127.0.0.1:{platform.env['MLOPS_IDE_MLFLOW_PORT']}/services/mlflow/api/2.0/mlflow"
    return api, {"Authorization": f"Bearer {token}"}


def experiment_id(api: str, auth: dict[str, str], name: str) -> str | None:
    found = requests.get(
        f"{api}/experiments/get-by-name", params={"experiment_name": name}, headers=auth, timeout=30
    )
    return found.json()["experiment"]["experiment_id"] if found.status_code == 200 else None


def test_a_preview_runs_and_records_to_its_own_experiment(
    platform: RunningPlatform, preview_run: dict
) -> None:
    assert preview_run["state"] == "success", preview_run
    api, auth = mlflow(platform)
    runs = requests.post(
        f"{api}/runs/search",
        json={"experiment_ids": [experiment_id(api, auth, "preview/alice/lr")]},
        headers=auth,
        timeout=30,
    ).json()["runs"]
    main = experiment_id(api, auth, "cnn_skin_cancer")

    assert runs, "the preview's steps recorded no run in its experiment"
    assert main is None or not requests.post(
        f"{api}/runs/search", json={"experiment_ids": [main]}, headers=auth, timeout=30
    ).json().get("runs"), "a preview's run recorded to the tracked branch's experiment"


def test_a_preview_cannot_move_champion_and_the_gate_says_why(
    platform: RunningPlatform, preview_run: dict
) -> None:
    api, auth = mlflow(platform)
    champion = requests.get(
        f"{api}/registered-models/alias",
        params={"name": MODEL, "alias": "champion"},
        headers=auth,
        timeout=30,
    )
    versions = requests.get(
        f"{api}/model-versions/search", params={"filter": f"name='{MODEL}'"}, headers=auth, timeout=30
    ).json()["model_versions"]
    forced = requests.post(
        f"{api}/registered-models/alias",
        json={"name": MODEL, "alias": "champion", "version": versions[0]["version"]},
        headers=auth,
        timeout=30,
    )

    assert champion.status_code != 200, "the preview's run made a champion"
    assert len(versions) == 1  # basic_cnn, registered for comparison
    assert forced.status_code == 403 and "preview/alice/lr" in forced.text, forced.text


def stored_dag(platform: RunningPlatform, dag_id: str) -> str:
    """The DAG as the DAG processor stored it in Airflow's database (what its UI shows), read only."""
    database = f"file:{platform.home / 'airflow' / 'airflow.db'}?mode=ro"
    with sqlite3.connect(database, uri=True) as db:
        rows = db.execute(
            "SELECT data, data_compressed FROM serialized_dag WHERE dag_id = ?", (dag_id,)
        ).fetchall()
    assert rows, f"no serialized {dag_id}"
    return "".join(str(data) if data else zlib.decompress(packed).decode() for data, packed in rows)


def test_a_preview_made_before_previews_had_experiments_records_to_main_and_still_cannot_make_a_champion(
    platform: RunningPlatform, airflow: AirflowAPI, bob: Path
) -> None:
    """A branch whose tasks.py ignores MLFLOW_EXPERIMENT_NAME (as before issue 29): its runs
    record to the tracked branch's experiment and its compare step sets `champion`; its tasks
    have the preview identity, which the gate never lets move `champion`, and the token they
    use is never in the DAG Airflow stores, nor shown rendered."""
    git(bob, "checkout", "--quiet", "-B", "try-old", "origin/main")
    tasks = (bob / "src" / "skin_cancer" / "tasks.py").read_text()
    reading = 'return os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT'
    old_tasks = tasks.replace(reading, "return EXPERIMENT")
    assert old_tasks != tasks, "tasks.py no longer reads the experiment as this test expects"
    files = {f"dags/{WORKFLOW}.py": edited_workflow(bob), "src/skin_cancer/tasks.py": old_tasks}
    user_commit(bob, files, "as before previews had experiments")
    pushed = push(platform, "bob", bob, "HEAD:preview/bob/old")
    assert pushed.returncode == 0 and f"preview: {WORKFLOW}__bob_old (paused)" in pushed.stderr, pushed.stderr
    dag_id = f"{WORKFLOW}__bob_old"
    assert (
        airflow.session.patch(
            f"{airflow.url}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=30
        ).status_code
        == 200
    )
    started = airflow.session.post(
        f"{airflow.url}/api/v2/dags/{dag_id}/dagRuns",
        json={"logical_date": None, "conf": {"epochs": 1, "image_size": 16}},
        timeout=30,
    )
    assert started.status_code == 200, started.text
    run_id = started.json()["dag_run_id"]
    run = airflow.wait_for_run(dag_id, run_id, timeout=600)

    api, auth = mlflow(platform)
    versions = requests.get(
        f"{api}/model-versions/search", params={"filter": f"name='{MODEL}'"}, headers=auth, timeout=30
    ).json()["model_versions"]
    main = experiment_id(api, auth, "cnn_skin_cancer")
    recorded_to_main = [
        version
        for version in versions
        if requests.get(
            f"{api}/runs/get", params={"run_id": version["run_id"]}, headers=auth, timeout=30
        ).json()["run"]["info"]["experiment_id"]
        == main
    ]
    champion = requests.get(
        f"{api}/registered-models/alias",
        params={"name": MODEL, "alias": "champion"},
        headers=auth,
        timeout=30,
    )
    instance = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances"
    compare_log = airflow.get(f"{instance}/compare/logs/1").text
    rendered = airflow.get(f"{instance}/train_basic_cnn").json()["rendered_fields"]
    stored = stored_dag(platform, dag_id)
    token = (platform.home / "airflow-auth" / "mlflow_preview_token").read_text().strip()

    assert recorded_to_main, "the old branch's run did not record to cnn_skin_cancer: not the case tested"
    assert run["state"] == "failed", run  # its compare step asked for champion
    assert champion.status_code != 200, "a preview's run made a champion"
    assert "a preview cannot move `champion`" in compare_log, compare_log[-3000:]
    assert "MLFLOW_TRACKING_TOKEN" not in str(rendered), rendered  # given when it starts, not rendered
    assert token not in stored and token not in str(rendered)
    assert "use_preview_identity" in stored  # what the DAG holds: the hook that reads it then


WHOAMI_DAG = """
import hashlib
import os

from airflow.sdk import dag, task


@dag(dag_id="whoami", schedule=None)
def whoami():
    @task
    def identity():  # a plain task, in the task's own process: never returns the token itself
        token = os.environ.get("MLFLOW_TRACKING_TOKEN", "")
        return {
            "experiment": os.environ.get("MLFLOW_EXPERIMENT_NAME"),
            "token_sha256": hashlib.sha256(token.encode()).hexdigest(),
        }

    identity()


whoami()
"""


def test_a_plain_task_of_a_preview_runs_with_the_preview_token_and_experiment(
    platform: RunningPlatform, airflow: AirflowAPI, bob: Path
) -> None:
    """Not only the pipeline's runners: a `@task` runs in the worker's process, whose
    environment holds the pipeline's token; the preview's gets the preview identity's there."""
    git(bob, "checkout", "--quiet", "-B", "try-who", "origin/main")
    user_commit(bob, {"dags/whoami.py": WHOAMI_DAG}, "who runs a preview's plain task")
    pushed = push(platform, "bob", bob, "HEAD:preview/bob/who")
    dag_id = "whoami__bob_who"
    assert pushed.returncode == 0 and f"preview: {dag_id} (paused)" in pushed.stderr, pushed.stderr
    unpaused = airflow.session.patch(
        f"{airflow.url}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=30
    )
    assert unpaused.status_code == 200, unpaused.text
    started = airflow.session.post(
        f"{airflow.url}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None}, timeout=30
    )
    assert started.status_code == 200, started.text
    run_id = started.json()["dag_run_id"]
    run = airflow.wait_for_run(dag_id, run_id, timeout=300)
    assert run["state"] == "success", run
    seen = airflow.get(f"dags/{dag_id}/dagRuns/{run_id}/taskInstances/identity/xcomEntries/return_value")
    assert seen.status_code == 200, seen.text
    token = (platform.home / "airflow-auth" / "mlflow_preview_token").read_text().strip()
    value = seen.json()["value"]  # the task's dict, or its JSON text
    text = value if isinstance(value, str) else json.dumps(value)
    assert "preview/bob/who" in text, text
    assert hashlib.sha256(token.encode()).hexdigest() in text, "the plain task did not have the preview token"


def test_the_fourth_preview_is_refused_with_ones_previews_and_how_to_delete_one(
    platform: RunningPlatform, alice: Path
) -> None:
    preview(platform, "alice", alice, "b")
    preview(platform, "alice", alice, "c")
    fourth = push(platform, "alice", alice, "HEAD:preview/alice/d")

    assert fourth.returncode != 0, fourth.stderr
    assert "preview/alice/b, preview/alice/c, preview/alice/lr" in fourth.stderr, fourth.stderr
    assert "git push origin :preview/alice/" in fourth.stderr


def test_deleting_a_preview_takes_its_dags_away_and_keeps_its_runs(
    platform: RunningPlatform, airflow: AirflowAPI, alice: Path, preview_run: dict
) -> None:
    dag_id = f"{WORKFLOW}__alice_lr"
    deleted = push(platform, "alice", alice, ":preview/alice/lr")

    assert deleted.returncode == 0 and "preview removed: preview/alice/lr" in deleted.stderr, deleted.stderr
    wait_for(lambda: (airflow.dag(dag_id) or {"is_stale": True})["is_stale"], 60, f"{dag_id} to go stale")
    listed = airflow.get("dags?limit=100").json()["dags"]
    assert dag_id not in [dag["dag_id"] for dag in listed]
    run = airflow.get(f"dags/{dag_id}/dagRuns/{preview_run['dag_run_id']}")
    assert run.status_code == 200 and run.json()["state"] == "success"
    assert airflow.dag(f"{WORKFLOW}__bob_lr")["is_stale"] is False  # bob's stays
