"""The workflow's steps in a preview (a branch `preview/<person>/<topic>`, for which the
platform sets MLFLOW_EXPERIMENT_NAME): they record to the preview's experiment, `compare`
makes no champion and `reload_serving` leaves serving alone, each saying so in the task's
log; without it, the steps are the tracked branch's, as before. Against a real MLflow server."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import mlflow
import pytest

from skin_cancer import CHAMPION, REGISTERED_MODEL
from skin_cancer.tasks import EXPERIMENT, compare_step, in_preview, preprocess_step, reload_serving_step

from .servers import free_port

PREVIEW = "preview/alice/lr"


def runs_of(experiment: str, airflow_run_id: str) -> list:
    found = mlflow.MlflowClient().get_experiment_by_name(experiment)
    if found is None:
        return []
    return mlflow.search_runs(
        [found.experiment_id], f"tags.airflow_run_id = '{airflow_run_id}'", output_format="list"
    )


def test_a_previews_steps_record_to_its_experiment(
    mlflow_server: str, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", PREVIEW)

    preprocess_step(str(dataset), str(tmp_path), "preview-run")

    assert len(runs_of(PREVIEW, "preview-run")) == 1
    assert runs_of(EXPERIMENT, "preview-run") == []


@pytest.mark.parametrize("unset", [None, ""])
def test_without_an_experiment_named_the_steps_record_to_the_workflows(
    mlflow_server: str, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unset: str | None
) -> None:
    if unset is None:
        monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", unset)

    preprocess_step(str(dataset), str(tmp_path), f"main-run-{unset!r}")

    assert len(runs_of(EXPERIMENT, f"main-run-{unset!r}")) == 1


@pytest.mark.parametrize(
    ("name", "preview"),
    [
        ("preview/alice/lr", True),
        ("PREVIEW/alice/lr", True),  # the gate reads it as a preview's too
        (" preview/alice/lr", True),
        ("cnn_skin_cancer", False),
        ("previews", False),
        ("team/preview/alice", False),
    ],
)
def test_a_preview_is_an_experiment_named_preview_slash(
    monkeypatch: pytest.MonkeyPatch, name: str, preview: bool
) -> None:
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", name)

    assert in_preview() is preview


@pytest.fixture
def candidates(mlflow_server: str) -> list[dict]:
    """Two new versions of the workflow's model to compare, the second the better; `champion`
    on an older third (the tracked branch's), which a preview must leave where it is."""
    client = mlflow.MlflowClient()
    if not client.search_registered_models(f"name = '{REGISTERED_MODEL}'"):
        client.create_registered_model(REGISTERED_MODEL)
    mlflow.set_experiment("compare-tests")
    versions = []
    for accuracy in (0.5, 0.7, 0.9):
        with mlflow.start_run() as run:
            mlflow.log_metric("test_accuracy", accuracy)
        source = f"runs:/{run.info.run_id}/model"
        versions.append(client.create_model_version(REGISTERED_MODEL, source, run.info.run_id).version)
    client.set_registered_model_alias(REGISTERED_MODEL, CHAMPION, versions[0])
    return [
        {"kind": "basic_cnn", "version": versions[1], "test_accuracy": 0.7},
        {"kind": "resnet50", "version": versions[2], "test_accuracy": 0.9},
    ]


def champion() -> str:
    return mlflow.MlflowClient().get_model_version_by_alias(REGISTERED_MODEL, CHAMPION).version


def test_compare_in_a_preview_names_the_best_and_makes_no_champion(
    candidates: list[dict], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    before = champion()
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", PREVIEW)

    result = compare_step(candidates)

    best = candidates[1]["version"]
    assert (result["version"], result["kind"], result["champion"]) == (best, "resnet50", False)
    assert champion() == before
    said = capsys.readouterr().out
    assert f"preview ({PREVIEW}): version {best} is this run's best" in said
    assert "does not become `champion`" in said and "Merge the branch into the tracked branch" in said


def test_compare_outside_a_preview_makes_the_best_champion(
    candidates: list[dict], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)

    result = compare_step(candidates)

    assert (result["version"], result["champion"]) == (candidates[1]["version"], True)
    assert champion() == candidates[1]["version"]


def test_reload_serving_in_a_preview_asks_serving_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"  # a request there would fail: none is sent
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", PREVIEW)

    assert reload_serving_step(nobody) == {"changed": False, "preview": PREVIEW}
    assert "serving is not reloaded" in capsys.readouterr().out

    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    with pytest.raises(urllib.error.URLError):  # outside a preview it does ask
        reload_serving_step(nobody)
