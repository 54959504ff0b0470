"""Fixtures of the pipeline tests: a synthetic dataset and a real MLflow server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlops_ide.services.mlflow import server_process as mlflow_server_process
from skin_cancer.synthetic import generate
from tests.platform_tools import free_port, start_logged, stop, tools_file_value, wait_until_healthy


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    generate(root, train=40, test=20, size=64, seed=1)
    return root


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`mlflow server` as the platform runs it (one worker, SQLite, local artifacts)."""
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    mlflow = Path(tools_file_value("MLOPS_IDE_AIRFLOW_PYTHON")).parent / "mlflow"
    log = home / "server.log"
    argv, env = mlflow_server_process(mlflow, port, home)
    server = start_logged(argv, env, log)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(f"{url}/health", server, log, timeout=60)
    os.environ["MLFLOW_TRACKING_URI"] = url
    yield url
    stop(server)
