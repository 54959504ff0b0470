"""The serving API as a real uvicorn process over a real MLflow registry."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import mlflow
import pytest
import requests
from PIL import Image

from skin_cancer import CHAMPION, CLASSES
from skin_cancer.data import list_split
from skin_cancer.preprocess import preprocess
from skin_cancer.train import TrainParams, train
from tests.platform_tools import ROOT, free_port, start_logged, stop, wait_until_healthy

MODEL = "serving_test_model"
UPLOAD_LIMIT = 200_000


@pytest.fixture(scope="module")
def versions(mlflow_server: str, dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    arrays = tmp_path_factory.mktemp("serving-arrays")
    preprocess(str(dataset), arrays, size=64)
    mlflow.set_experiment("serving-tests")
    first = train("basic_cnn", arrays, TrainParams(), MODEL)
    second = train("basic_cnn", arrays, TrainParams(seed=1), MODEL)
    mlflow.MlflowClient().set_registered_model_alias(MODEL, CHAMPION, first.version)
    return [first.version, second.version]


@pytest.fixture(scope="module")
def server(versions: list[str], mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    port = free_port()
    log = tmp_path_factory.mktemp("serving") / "serving.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "MLFLOW_TRACKING_URI": mlflow_server,
        "SKIN_CANCER_MODEL_NAME": MODEL,
        "SKIN_CANCER_RELOAD_SECONDS": "1",
        "SKIN_CANCER_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
    }
    env.pop("KERAS_BACKEND", None)
    process = start_logged([sys.executable, "-m", "skin_cancer.serving", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(f"{url}/health", process, log)
    yield url
    stop(process)


def upload(
    url: str, data: bytes, name: str = "lesion.png", content_type: str = "image/png"
) -> requests.Response:
    return requests.post(f"{url}/predict", files={"file": (name, data, content_type)}, timeout=30)


def test_held_out_images_are_classified_correctly(server: str, dataset: Path) -> None:
    listed = list_split(str(dataset), "test")
    right = 0
    for path, label in zip(listed.paths, listed.labels, strict=True):
        content_type = "image/png" if path.endswith(".png") else "image/jpeg"
        answer = upload(server, Path(path).read_bytes(), Path(path).name, content_type).json()
        assert set(answer["probabilities"]) == set(CLASSES)
        assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        right += answer["label"] == CLASSES[label]

    assert right / len(listed.labels) >= 0.9


def test_health_and_model_describe_the_champion(server: str, versions: list[str]) -> None:
    assert requests.get(f"{server}/health", timeout=10).json()["status"] == "ok"
    model = requests.get(f"{server}/model", timeout=10).json()

    assert model["name"] == MODEL and model["alias"] == CHAMPION
    assert model["version"] == mlflow.MlflowClient().get_model_version_by_alias(MODEL, CHAMPION).version
    assert model["run_id"]


def png_bytes(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 150, 120)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data, content_type, status",
    [
        (b"just some text", "text/plain", 415),
        (b"", "image/png", 400),
        (b"\x89PNG but not really an image", "image/png", 400),
        (os.urandom(UPLOAD_LIMIT + 1), "image/jpeg", 413),
    ],
    ids=["wrong-content-type", "empty", "not-an-image", "too-large"],
)
def test_bad_input_gets_a_4xx_with_a_message(
    server: str, data: bytes, content_type: str, status: int
) -> None:
    response = upload(server, data, content_type=content_type)

    assert response.status_code == status
    assert response.json()["detail"]
    assert requests.get(f"{server}/health", timeout=10).status_code == 200  # still serving


def test_a_request_without_a_file_is_refused(server: str) -> None:
    response = requests.post(f"{server}/predict", data={"image": "x"}, timeout=10)

    assert response.status_code == 422


def test_a_new_champion_is_served_without_a_restart(server: str, versions: list[str]) -> None:
    first, second = versions
    assert upload(server, png_bytes()).json()["model_version"] == first

    mlflow.MlflowClient().set_registered_model_alias(MODEL, CHAMPION, second)

    deadline = time.monotonic() + 30
    while requests.get(f"{server}/model", timeout=10).json()["version"] != second:
        assert time.monotonic() < deadline, "the new champion was not picked up"
        time.sleep(0.2)
    assert upload(server, png_bytes()).json()["model_version"] == second
    assert requests.post(f"{server}/reload", timeout=30).json() == {"changed": False, "version": second}
