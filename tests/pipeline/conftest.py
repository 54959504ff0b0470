"""Fixtures of the pipeline tests: a synthetic dataset and a real MLflow server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from skin_cancer.synthetic import generate

from .servers import free_port, start_logged, stop, wait_until_healthy


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dataset")
    generate(root, train=40, test=20, size=64, seed=1)
    return root


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`mlflow server` of this environment: one worker, SQLite, local artifacts."""
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    bin_dir = Path(sys.executable).parent  # `mlflow server` runs uvicorn from PATH
    log = home / "server.log"
    argv = [str(bin_dir / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    argv += [
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        str(home / "a"),
    ]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(
        {
            "PATH": f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
    )
    server = start_logged(argv, env, log)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(f"{url}/health", server, log, timeout=60)
    os.environ["MLFLOW_TRACKING_URI"] = url
    yield url
    stop(server)
