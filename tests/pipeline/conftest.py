"""Fixtures of the pipeline tests: a synthetic dataset and a real MLflow server."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from skin_cancer.synthetic import generate
from tests.platform_tools import free_port, tools_file_value


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
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PATH": f"{mlflow.parent}:{os.environ['PATH']}",
    }
    server = subprocess.Popen(
        [
            str(mlflow),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{home / 'mlflow.db'}",
            "--artifacts-destination",
            str(home / "artifacts"),
        ],
        env=env,
        stdout=open(home / "server.log", "wb"),  # noqa: SIM115 - open for the server's life
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError((home / "server.log").read_text()[-2000:]) from None
            time.sleep(0.2)
    os.environ["MLFLOW_TRACKING_URI"] = url
    yield url
    os.killpg(server.pid, 15)
    server.wait(30)
