"""Training and the champion, against a real MLflow server: the three model kinds are
tracked and registered, the best gets the `champion` alias, and a fresh process loads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

import skin_cancer
from skin_cancer import CHAMPION
from skin_cancer.compare import NoCandidates, choose_champion
from skin_cancer.preprocess import preprocess
from skin_cancer.train import TrainParams, train

SRC = str(Path(skin_cancer.__file__).resolve().parents[1])  # this repository's src/

MODEL = "skin_cancer_cnn_test"


@pytest.fixture(scope="module")
def arrays(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("arrays")
    preprocess(str(dataset), out, size=64)
    return out


@pytest.fixture(scope="module")
def trained(mlflow_server: str, arrays: Path) -> dict:
    mlflow.set_experiment("skin-cancer-tests")
    quick = TrainParams(folds=2)
    return {
        "basic_cnn": train("basic_cnn", arrays, quick, MODEL),
        "crossval": train("crossval", arrays, quick, MODEL),
        "resnet50": train("resnet50", arrays, TrainParams(epochs=1, batch_size=16), MODEL),
    }


def test_each_kind_is_registered_as_a_version_with_its_metrics(trained: dict) -> None:
    client = mlflow.MlflowClient()

    versions = {result.version for result in trained.values()}
    assert len(versions) == 3
    for kind, result in trained.items():
        model_version = client.get_model_version(MODEL, result.version)
        run = client.get_run(result.run_id)
        assert model_version.run_id == result.run_id
        assert model_version.tags["model_kind"] == kind
        assert run.data.params["model_kind"] == kind
        assert run.data.metrics["test_accuracy"] == pytest.approx(result.test_accuracy)
        epochs = client.get_metric_history(result.run_id, "accuracy")
        assert len(epochs) == int(run.data.params["epochs"])


def test_the_basic_cnn_learns_the_synthetic_classes(trained: dict) -> None:
    assert trained["basic_cnn"].test_accuracy >= 0.9


def test_crossval_logs_mean_and_spread_then_registers_a_final_model(trained: dict) -> None:
    run = mlflow.MlflowClient().get_run(trained["crossval"].run_id)

    assert {"cv_accuracy_mean", "cv_accuracy_std"} <= set(run.data.metrics)
    assert len(mlflow.MlflowClient().get_metric_history(run.info.run_id, "cv_fold_accuracy")) == 2
    assert trained["crossval"].version


def test_figures_and_signature_are_logged(trained: dict) -> None:
    run_id = trained["basic_cnn"].run_id
    artifacts = {item.path for item in mlflow.MlflowClient().list_artifacts(run_id)}

    assert {"confusion_matrix.png", "training_curve.png", "confusion_matrix.json"} <= artifacts
    model = mlflow.models.get_model_info(f"models:/{MODEL}/{trained['basic_cnn'].version}")
    assert list(model.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == [-1, 64, 64, 3]


def test_the_best_test_accuracy_becomes_champion(trained: dict) -> None:
    versions = [result.version for result in trained.values()]

    winner, accuracy = choose_champion(versions, MODEL)

    best = max(trained.values(), key=lambda r: (r.test_accuracy, -int(r.version)))
    assert (winner, accuracy) == (best.version, pytest.approx(best.test_accuracy))
    assert mlflow.MlflowClient().get_model_version_by_alias(MODEL, CHAMPION).version == best.version


def test_a_tie_goes_to_the_earliest_version(mlflow_server: str) -> None:
    client = mlflow.MlflowClient()
    name = "tie_break_test"
    client.create_registered_model(name)
    numbers = []
    for _ in range(3):
        with mlflow.start_run() as run:
            mlflow.log_metric("test_accuracy", 0.95)
        numbers.append(
            client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id).version
        )

    assert choose_champion(list(reversed(numbers)), name)[0] == numbers[0]
    with pytest.raises(NoCandidates):
        choose_champion([], name)


def test_a_fresh_process_loads_the_champion_with_the_torch_backend(
    trained: dict, mlflow_server: str, arrays: Path
) -> None:
    choose_champion([r.version for r in trained.values()], MODEL)
    script = f"""
import json, numpy as np, skin_cancer, mlflow, keras
model = mlflow.keras.load_model("models:/{MODEL}@{CHAMPION}")
x = np.load("{arrays / "test_x.npy"}"); y = np.load("{arrays / "test_y.npy"}")
print(json.dumps({{"backend": keras.backend.backend(),
                  "accuracy": float((model.predict(x, verbose=0).argmax(1) == y).mean())}}))
"""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = SRC
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )

    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["backend"] == "torch"
    assert loaded["accuracy"] >= 0.9
