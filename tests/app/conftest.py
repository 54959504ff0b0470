"""A real serving API with a real champion, for the app's tests (which run in the app's
light virtualenv): MLflow from Airflow's virtualenv, training and serving in the pipeline's."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mlops_ide.machine.components.mlflow import server_process as mlflow_server_process
from tests.support.platform_tools import (
    ROOT,
    free_port,
    start_logged,
    step_result,
    stop,
    tools_file_value,
    wait_until_healthy,
)


def pipeline_step(python: str, env: dict, step: str, arguments: dict) -> object:
    done = subprocess.run(
        [python, "-W", "ignore", "-m", "skin_cancer.tasks", step, json.dumps(arguments)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return step_result(done.stdout)


@pytest.fixture(scope="session")
def serving_api(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("app-backend")
    mlflow_bin = Path(tools_file_value("MLOPS_IDE_AIRFLOW_PYTHON")).parent / "mlflow"
    pipeline = tools_file_value("MLOPS_IDE_PIPELINE_PYTHON")
    tracking_port, serving_port = free_port(), free_port()
    argv, env = mlflow_server_process(mlflow_bin, tracking_port, work)
    tracking = start_logged(argv, env, work / "mlflow.log")
    processes = [tracking]
    try:
        wait_until_healthy(f"http://127.0.0.1:{tracking_port}/health", tracking, work / "mlflow.log", 60)
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT / "src"),
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{tracking_port}",
        }
        subprocess.run(
            [
                pipeline,
                "-m",
                "skin_cancer.synthetic",
                "--out",
                str(work / "data"),
                "--train",
                "40",
                "--test",
                "4",
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        arrays = pipeline_step(
            pipeline,
            env,
            "preprocess",
            {"data_root": str(work / "data"), "work_root": str(work / "runs"), "run_id": "t"},
        )
        trained = pipeline_step(
            pipeline, env, "train", {"kind": "basic_cnn", "arrays": arrays, "run_id": "t"}
        )
        pipeline_step(pipeline, env, "compare", {"results": [trained]})
        serving = start_logged(
            [pipeline, "-m", "skin_cancer.serving", "--port", str(serving_port)], env, work / "serving.log"
        )
        processes.append(serving)
        url = f"http://127.0.0.1:{serving_port}"
        wait_until_healthy(f"{url}/health", serving, work / "serving.log", 120)
        yield url
    finally:
        for process in processes:
            stop(process)


@pytest.fixture(scope="session")
def dataset_images(serving_api: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One held-out image of each class, made by the pipeline's synthetic generator."""
    out = tmp_path_factory.mktemp("app-images")
    subprocess.run(
        [
            tools_file_value("MLOPS_IDE_PIPELINE_PYTHON"),
            "-m",
            "skin_cancer.synthetic",
            "--out",
            str(out),
            "--train",
            "1",
            "--test",
            "1",
            "--seed",
            "42",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        check=True,
        capture_output=True,
    )
    return {name: next((out / "test" / name).iterdir()) for name in ("benign", "malignant")}
