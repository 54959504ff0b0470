"""A small client for Airflow 3's REST API, as the tests and benchmarks use it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from tests.support.local_platform import RunningPlatform, wait_for


class AirflowAPI:
    def __init__(self, url: str, password: str, username: str = "mlops-ide-platform"):
        self.url = url.rstrip("/")
        response = requests.post(
            f"{self.url}/auth/token", json={"username": username, "password": password}, timeout=30
        )
        response.raise_for_status()
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def get(self, path: str) -> requests.Response:
        return self.session.get(f"{self.url}/api/v2/{path}", timeout=30)

    def dag(self, dag_id: str) -> dict | None:
        response = self.get(f"dags/{dag_id}")
        return response.json() if response.status_code == 200 else None

    def import_errors(self) -> dict[str, str]:
        errors = self.get("importErrors?limit=100").json()["import_errors"]
        return {error["filename"]: error["stack_trace"] for error in errors}

    def trigger(self, dag_id: str) -> str:
        response = self.session.post(
            f"{self.url}/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None}, timeout=30
        )
        assert response.status_code == 200, response.text
        return response.json()["dag_run_id"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 180) -> dict:
        def finished() -> dict | None:
            run = self.get(f"dags/{dag_id}/dagRuns/{run_id}").json()
            return run if run["state"] in ("success", "failed") else None

        return wait_for(finished, timeout, f"run {run_id} of {dag_id} to finish")


@contextmanager
def airflow_and_alices_clone(state: Path) -> Iterator[tuple[RunningPlatform, AirflowAPI, Path]]:
    """A platform with Airflow and MLflow in `state`, its seeded DAGs parsed, and alice's clone
    (her server started): what the push benchmarks start from."""
    platform = RunningPlatform(state, MLOPS_IDE_SERVICES="airflow,mlflow").start(timeout=300)
    try:
        api = AirflowAPI(platform.airflow_url, platform.airflow_password)
        wait_for(lambda: api.dag("platform_smoke_test"), 120, "the seeded DAGs")
        platform.open_vscode(platform.login("alice"), "alice")
        yield platform, api, platform.home / "homes" / "alice" / "pipelines"
    finally:
        platform.stop(timeout=300)
