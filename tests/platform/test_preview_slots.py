"""Preview slots in real Airflow: its GitDagBundle and DagBag code, in its virtualenv, with
the platform's PreviewSlotBundle (mlops_ide/in_airflow/preview_bundle.py) and cluster policy
(airflow_local_settings -> preview_policy.py), on a real bare repository. Each probe runs the
steps the DAG processor and a task's start take (tests/support/preview_slot_probe.py)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from mlops_ide.in_airflow.preview_policy import CHECKED_OUT
from mlops_ide.machine.state.tools import Tools
from mlops_ide.portable import previews
from tests.support.gitrepos import Remote
from tests.support.local_platform import ROOT

PROBE = ROOT / "tests" / "support" / "preview_slot_probe.py"
CONN_ID = "preview_git"
SLOT = {"git_conn_id": CONN_ID, "subdir": "dags", "refresh_interval": 3}

HELLO_DAG = """
from airflow.sdk import dag, task


@dag(dag_id="hello", schedule=None, tags=["test"])
def hello():
    @task.external_python(python="/usr/bin/python3", expect_airflow=False)
    def answer():
        return {answer}

    answer()

    @task
    def in_worker():  # a plain task: runs in the task's own process
        import os

        return {{
            "experiment": os.environ.get("MLFLOW_EXPERIMENT_NAME"),
            "preview_token": os.environ.get("MLFLOW_TRACKING_TOKEN")
            == os.environ.get("AIRFLOW_VAR_MLFLOW_PREVIEW_TOKEN"),
        }}

    in_worker()
    # the other runners of dags/pipeline_steps.py, built (never run)
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.providers.docker.operators.docker import DockerOperator

    DockerOperator(task_id="in_container", image="pipeline", environment={{"A": "1"}})
    KubernetesPodOperator(task_id="in_pod", image="pipeline", env_vars={{"A": "1"}})


hello()
"""


class Slots:
    """A remote with `main` and two previews, and where the probes keep Airflow's state."""

    def __init__(self, root: Path):
        self.root = root
        self.remote = Remote(root)
        self.main = self.remote.commit({"dags/hello.py": HELLO_DAG.format(answer=1)}, "hello")
        self.alice = self.remote.commit(
            {"dags/hello.py": HELLO_DAG.format(answer=2)}, "a", "preview/alice/lr"
        )
        self.bob = self.remote.commit({"dags/hello.py": HELLO_DAG.format(answer=3)}, "b", "preview/bob/x")
        self.storage = root / "bundles"
        self.registry = root / "push-status" / "previews.json"
        self.registry.parent.mkdir()
        self.extra: dict[str, str] = {}  # more of Airflow's environment

    def entry(self, slot: str, branch: str, commit: str) -> dict:
        preview = previews.parse_branch(branch)
        return {
            "slot": slot,
            "branch": branch,
            "person": preview.person,
            "topic": preview.topic,
            "commit": commit,
            "pushed_by": preview.person,
            "created": 1.0,
            "pushed": 1.0,
        }

    def main_bundle_with_alices_preview(self) -> dict:
        """A probe step: the tracked branch's own bundle, alice's preview in slot preview-1."""
        return {
            "registry": [self.entry("preview-1", "preview/alice/lr", self.alice)],
            "bundle": "pipelines",
            "classpath": "airflow.providers.git.bundles.git.GitDagBundle",
            "kwargs": {**SLOT, "tracking_ref": "main"},
            "do": "initialize",
        }

    def environment(self) -> dict[str, str]:
        """Airflow's, as the platform gives it, in a folder of the test's."""
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root),
            "PYTHONPATH": str(ROOT / "src"),
            "AIRFLOW_HOME": str(self.root / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.root / 'airflow.db'}",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(self.storage),
            f"AIRFLOW_CONN_{CONN_ID.upper()}": json.dumps({"conn_type": "git", "host": self.remote.url}),
            previews.ENV: str(self.registry),
            **self.extra,
        }

    def probe(self, *steps: dict) -> list[dict]:
        done = subprocess.run(
            [str(Tools.load().airflow_python), str(PROBE), json.dumps(list(steps))],
            env=self.environment(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


@pytest.fixture
def slots(tmp_path: Path) -> Slots:
    return Slots(tmp_path)


def test_a_preview_slot_shows_the_branch_dags_renamed_paused_tagged_with_its_experiment(slots: Slots) -> None:
    (seen,) = slots.probe(
        {
            "registry": [slots.entry("preview-1", "preview/alice/lr", slots.alice)],
            "kwargs": SLOT,
            "do": "initialize",
        }
    )
    assert seen["version"] == slots.alice
    assert seen["errors"] == {}
    assert seen["dags"] == {
        "hello__alice_lr": {
            "tags": ["by:alice", "preview/alice/lr", "test"],
            "paused": True,
            "env": {  # the containers' (the others get it when they start, below)
                "answer": None,
                "in_worker": None,
                "in_container": "preview/alice/lr",
                "in_pod": "preview/alice/lr",
            },
        }
    }


PREVIEW_TOKEN = "preview-token-0123456789abcdef"
TEMPLATE = "{{ var.value.mlflow_preview_token }}"


def test_a_previews_containers_get_the_token_as_a_rendered_template_never_in_the_stored_dag(
    slots: Slots,
) -> None:
    """Docker's and Kubernetes' steps get the environment explicitly: the token's template in
    the field Airflow renders (a pod's from the Secret
    mlflow-preview-token instead); the token itself (in Airflow's environment) nowhere in the DAG as
    the DAG processor stores it, nor is an ExternalPythonOperator's env_vars made a template."""
    slots.extra = {"AIRFLOW_VAR_MLFLOW_PREVIEW_TOKEN": PREVIEW_TOKEN}
    (seen,) = slots.probe(
        {
            "registry": [slots.entry("preview-1", "preview/alice/lr", slots.alice)],
            "kwargs": SLOT,
            "do": "initialize",
        }
    )
    identity = seen["identity"]["hello__alice_lr"]
    assert identity["token"] == {
        "answer": None,
        "in_worker": None,
        "in_container": TEMPLATE,
        "in_pod": "secret mlflow-preview-token/token",  # from the Secret: no value in its spec
    }
    assert identity["templated"] == {
        "answer": False,
        "in_worker": False,
        "in_container": True,
        "in_pod": True,
    }
    assert PREVIEW_TOKEN not in identity["stored"] and "use_preview_identity" in identity["stored"]


def test_every_task_of_a_preview_starts_with_the_preview_token_and_experiment(slots: Slots) -> None:
    """A task's start parses its commit (the policy runs there too) and runs the pre-execute
    hook the policy gave every task: a plain `@task` reads the preview's token and experiment
    from its process's environment, not the pipeline's token the worker holds."""
    slots.extra = {"AIRFLOW_VAR_MLFLOW_PREVIEW_TOKEN": PREVIEW_TOKEN, "MLFLOW_TRACKING_TOKEN": "pipelines"}
    registry = [slots.entry("preview-1", "preview/alice/lr", slots.alice)]
    _, run = slots.probe(
        {"registry": registry, "kwargs": SLOT, "do": "initialize"},
        {"kwargs": SLOT, "version": slots.alice, "do": "initialize", "start": True},
    )
    started = run["started"]["hello__alice_lr"]
    mine = {"experiment": "preview/alice/lr", "preview_token": True}
    assert started["in_worker"] == {**mine, "returned": mine}
    assert started["answer"] == {  # its interpreter gets both even without the worker's environment
        **mine,
        "env_vars": ["MLFLOW_EXPERIMENT_NAME", "MLFLOW_TRACKING_TOKEN"],
    }
    assert started["in_container"] == mine
    # a pod step's own process names the experiment only: its pod takes the token from the
    # Secret mlflow-preview-token (the test above), so no preview token is needed here
    assert started["in_pod"] == {"experiment": "preview/alice/lr", "preview_token": False}


def test_a_previews_task_fails_to_start_without_the_preview_token_never_as_the_pipeline(slots: Slots) -> None:
    slots.extra = {"MLFLOW_TRACKING_TOKEN": "pipelines"}  # Airflow given no preview token
    registry = [slots.entry("preview-1", "preview/alice/lr", slots.alice)]
    _, run = slots.probe(
        {"registry": registry, "kwargs": SLOT, "do": "initialize"},
        {"kwargs": SLOT, "version": slots.alice, "do": "initialize", "start": True},
    )
    started = run["started"]["hello__alice_lr"]
    assert set(started) == {"answer", "in_worker", "in_container", "in_pod"}
    pod = started.pop("in_pod")  # its pod's token comes from its Secret: no Variable needed
    assert "error" not in pod and pod["experiment"] == "preview/alice/lr", pod
    for task in started.values():
        assert "cannot get the preview identity's MLflow token" in task["error"], task
        assert "returned" not in task


def test_a_main_task_starts_with_the_workers_environment(slots: Slots) -> None:
    slots.extra = {"AIRFLOW_VAR_MLFLOW_PREVIEW_TOKEN": PREVIEW_TOKEN, "MLFLOW_TRACKING_TOKEN": "pipelines"}
    (seen,) = slots.probe({**slots.main_bundle_with_alices_preview(), "start": True})
    pipeline = {"experiment": None, "preview_token": False}
    assert seen["started"]["hello"]["in_worker"] == {**pipeline, "returned": pipeline}


def test_a_task_run_parses_its_commit_under_the_same_id(slots: Slots) -> None:
    registry = [slots.entry("preview-1", "preview/alice/lr", slots.alice)]
    tracking, run = slots.probe(
        {"registry": registry, "kwargs": SLOT, "do": "initialize"},
        {"kwargs": SLOT, "version": slots.alice, "do": "initialize"},
    )
    assert run["path"].endswith(f"preview-1/versions/{slots.alice}/dags")
    assert run["version"] == slots.alice
    assert list(run["dags"]) == list(tracking["dags"]) == ["hello__alice_lr"]


def test_the_main_bundle_dags_are_untouched(slots: Slots) -> None:
    (seen,) = slots.probe(slots.main_bundle_with_alices_preview())
    assert seen["dags"] == {
        "hello": {
            "tags": ["test"],
            "paused": None,
            "env": {"answer": None, "in_worker": None, "in_container": None, "in_pod": None},
        }
    }
    # no preview token: the worker's environment, the pipeline's; the provider's own fields
    assert set(seen["identity"]["hello"]["token"].values()) == {None}
    assert seen["identity"]["hello"]["templated"]["answer"] is False


def test_a_free_slot_is_an_empty_folder_with_no_version(slots: Slots) -> None:
    (seen,) = slots.probe({"registry": [], "kwargs": SLOT, "do": "initialize"})
    assert seen == {
        "path": str(slots.storage / "preview-1" / "free"),
        "version": None,
        "dags": {},
        "errors": {},
        "identity": {},
    }


def test_a_slot_follows_the_registry_taken_moved_to_another_branch_then_freed(slots: Slots) -> None:
    free, alice, bob, freed = slots.probe(
        {"registry": [], "kwargs": SLOT, "do": "initialize"},
        {"registry": [slots.entry("preview-1", "preview/alice/lr", slots.alice)], "do": "refresh"},
        {"registry": [slots.entry("preview-1", "preview/bob/x", slots.bob)], "do": "refresh"},
        {"registry": [], "do": "refresh"},
    )
    assert (free["version"], list(free["dags"])) == (None, [])
    assert (alice["version"], list(alice["dags"])) == (slots.alice, ["hello__alice_lr"])
    assert (bob["version"], list(bob["dags"])) == (slots.bob, ["hello__bob_x"])
    containers = bob["dags"]["hello__bob_x"]["env"]
    assert (containers["in_container"], containers["in_pod"]) == ("preview/bob/x", "preview/bob/x")
    assert (freed["version"], freed["dags"], freed["errors"]) == (None, {}, {})


def test_a_slot_runs_the_commit_the_registry_records_not_a_push_it_did_not_let_in(slots: Slots) -> None:
    """Bob pushes to alice's preview branch where no hook of ours runs (GitHub): until the
    registry records his commit, the slot runs alice's; when he rewrote her branch, nothing."""
    alice = slots.entry("preview-1", "preview/alice/lr", slots.alice)
    _, bobs_on_top, bobs_rewrite = slots.probe(
        {"registry": [alice], "kwargs": SLOT, "do": "initialize"},
        {"git": ["update-ref", "refs/heads/preview/alice/lr", slots.bob], "do": "refresh"},
        {"git": ["update-ref", "refs/heads/preview/alice/lr", slots.main], "do": "refresh"},
    )

    # bob's commit descends from alice's (the Remote's branches share history): hers still runs
    assert (bobs_on_top["version"], list(bobs_on_top["dags"])) == (slots.alice, ["hello__alice_lr"])
    assert (bobs_rewrite["version"], bobs_rewrite["dags"]) == (None, {})


def test_a_slot_whose_branch_is_gone_is_free_not_the_last_commit_nor_a_tag_of_its_name(slots: Slots) -> None:
    """The registry still names preview/alice/lr (its deletion's report was lost) after the
    branch went; a tag of that name, or of a preview that never had a branch, is not run."""
    alice = slots.entry("preview-1", "preview/alice/lr", slots.alice)
    carol = slots.entry("preview-1", "preview/carol/x", slots.bob)
    held, gone, tagged, never = slots.probe(
        {"registry": [alice], "kwargs": SLOT, "do": "initialize"},
        {"git": ["update-ref", "-d", "refs/heads/preview/alice/lr"], "do": "refresh"},
        {"git": ["tag", "preview/alice/lr", slots.bob], "do": "refresh"},
        {"registry": [carol], "git": ["tag", "preview/carol/x", slots.bob], "do": "refresh"},
    )
    assert (held["version"], list(held["dags"])) == (slots.alice, ["hello__alice_lr"])
    for free in (gone, tagged, never):
        assert (free["path"], free["version"], free["dags"]) == (
            str(slots.storage / "preview-1" / "free"),
            None,
            {},
        )


def test_a_slot_given_to_bob_after_it_checked_out_alice_loads_neither(slots: Slots) -> None:
    """The race: the registry moves between the bundle's refresh and the parse."""
    _, raced = slots.probe(
        {
            "registry": [slots.entry("preview-1", "preview/alice/lr", slots.alice)],
            "kwargs": SLOT,
            "do": "initialize",
        },
        {"registry": [slots.entry("preview-1", "preview/bob/x", slots.bob)], "do": "parse"},
    )
    assert raced["dags"] == {}
    (error,) = raced["errors"].values()
    assert "preview-1 now holds preview/bob/x, but its bundle checked out preview/alice/lr" in error


def test_a_dag_file_in_a_slot_with_no_entry_is_refused_not_loaded_as_main(slots: Slots) -> None:
    _, orphan = slots.probe(
        {
            "registry": [slots.entry("preview-1", "preview/alice/lr", slots.alice)],
            "kwargs": SLOT,
            "do": "initialize",
        },
        {"registry": [], "do": "parse"},  # freed, not yet refreshed: its checkout still holds files
    )
    assert orphan["dags"] == {}
    (error,) = orphan["errors"].values()
    assert "preview slot preview-1 holds no preview" in error


def test_a_broken_registry_refuses_the_slot_dags(slots: Slots) -> None:
    slots.probe(
        {
            "registry": [slots.entry("preview-1", "preview/alice/lr", slots.alice)],
            "kwargs": SLOT,
            "do": "initialize",
        }
    )
    slots.registry.write_text("{not json")
    (seen,) = slots.probe({"kwargs": SLOT, "version": slots.alice, "do": "initialize"})
    assert seen["dags"] == {}
    (error,) = seen["errors"].values()
    assert "is not the previews' registry" in error
    assert json.loads((slots.storage / "preview-1" / CHECKED_OUT).read_text())["branch"] == "preview/alice/lr"


def dag_rows(database: Path) -> dict[str, dict]:
    with closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT dag_id, bundle_name, is_paused, is_stale FROM dag").fetchall()
        tags = db.execute("SELECT dag_id, name FROM dag_tag").fetchall()
    return {
        dag_id: {
            "bundle": bundle,
            "paused": bool(paused),
            "stale": bool(stale),
            "tags": sorted(name for tagged, name in tags if tagged == dag_id),
        }
        for dag_id, bundle, paused, stale in rows
    }


def test_the_dag_processor_lists_a_preview_paused_then_deactivates_it_when_its_slot_is_freed(
    slots: Slots,
) -> None:
    """Airflow's own DAG processor, one pass at a time, on its database: the preview's DAG is
    stored under its id, paused (main's is not), and goes stale once its slot is free."""
    airflow = str(Tools.load().airflow_python.parent / "airflow")
    bundles = [
        {
            "name": "pipelines",
            "classpath": "airflow.providers.git.bundles.git.GitDagBundle",
            "kwargs": {**SLOT, "tracking_ref": "main"},
        },
        {
            "name": "preview-1",
            "classpath": "mlops_ide.in_airflow.preview_bundle.PreviewSlotBundle",
            "kwargs": SLOT,
        },
    ]
    env = {
        **slots.environment(),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    }

    def run(*command: str) -> None:
        done = subprocess.run(
            [airflow, *command], env=env, cwd=slots.root, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]

    run("db", "migrate")
    previews.write(
        slots.registry, [previews.Entry(**slots.entry("preview-1", "preview/alice/lr", slots.alice))]
    )
    run("dag-processor", "--num-runs", "1")
    listed = dag_rows(slots.root / "airflow.db")
    assert listed == {
        "hello": {"bundle": "pipelines", "paused": False, "stale": False, "tags": ["test"]},
        "hello__alice_lr": {
            "bundle": "preview-1",
            "paused": True,
            "stale": False,
            "tags": ["by:alice", "preview/alice/lr", "test"],
        },
    }

    previews.write(slots.registry, [])
    run("dag-processor", "--num-runs", "1")
    after = dag_rows(slots.root / "airflow.db")
    assert (after["hello__alice_lr"]["stale"], after["hello"]["stale"]) == (True, False)
