"""MLflow's usage telemetry stays off unless the operator turns it on: a real `mlflow server`
started as the platform starts it, and a real MLflow client with a user server's
environment, behind a proxy that records where they try to go."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from mlops_ide.hub.modes import load
from mlops_ide.machine import components
from mlops_ide.machine.components import mlflow
from mlops_ide.machine.state.tools import Tools
from tests.support.platform_tools import free_port, start_logged, stop, wait_until_healthy

# What MLflow takes for a CI run or a test (mlflow/telemetry/utils.py), where it sends
# nothing whatever the setting: a platform has none of them, so neither may the test.
TESTING_MARKERS = ("PYTEST_CURRENT_TEST", "GITHUB_ACTIONS", "CI", "CIRCLECI", "GITLAB_CI", "JENKINS_URL")
TELEMETRY_HOST = b"mlflow-telemetry.io"


class WatchingProxy:
    """An HTTP(S) proxy on loopback that lets nothing through and keeps each request line."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.asked: list[bytes] = []
        threading.Thread(target=self.serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(5)
                try:
                    self.asked.append(connection.recv(4096).split(b"\r\n", 1)[0])
                    connection.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    continue


@pytest.fixture
def proxy() -> Iterator[WatchingProxy]:
    watching = WatchingProxy()
    yield watching
    watching.server.close()


def environ_behind(proxy: WatchingProxy) -> dict[str, str]:
    drop = {*TESTING_MARKERS, "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK", "PYTHONPATH"}
    env = {name: value for name, value in os.environ.items() if name not in drop}
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        env[name] = proxy.url
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


CLIENT = """
import mlflow
mlflow.set_experiment("telemetry-probe")
with mlflow.start_run():
    mlflow.log_param("a", 1)
"""


def run_mlflow_and_a_client(tmp_path: Path, proxy: WatchingProxy, telemetry: bool) -> dict:
    """A server with the platform's command and environment, the UI's telemetry question to
    it, and a client run with a user server's MLflow variables; the UI's answer."""
    python = Tools.load().airflow_python
    port = free_port()
    argv, env = mlflow.server_process(
        python.parent / "mlflow", port, tmp_path, environ_behind(proxy), telemetry=telemetry
    )
    server = start_logged(argv, env, tmp_path / "mlflow.log")
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}/health", server, tmp_path / "mlflow.log", 90)
        answer = requests.get(f"http://127.0.0.1:{port}/ajax-api/3.0/mlflow/ui-telemetry", timeout=30).json()
        settings = load({"MLOPS_IDE_MLFLOW_TELEMETRY": "1" if telemetry else "0"})
        client_env = {
            **environ_behind(proxy),
            **components.client_env(settings),
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
        }
        ran = subprocess.run(
            [str(python), "-c", CLIENT], env=client_env, capture_output=True, text=True, timeout=120
        )
        assert ran.returncode == 0, ran.stderr[-2000:]
        time.sleep(2)  # the server's telemetry thread asks for its configuration on its own time
    finally:
        stop(server)
    return answer


def test_mlflow_server_ui_and_clients_send_no_usage_data(tmp_path: Path, proxy: WatchingProxy) -> None:
    answer = run_mlflow_and_a_client(tmp_path, proxy, telemetry=False)

    assert answer["disable_ui_telemetry"] is True  # the UI sends nothing
    assert proxy.asked == []  # nor asks for its configuration (config.mlflow-telemetry.io, a CDN)


def test_the_operator_can_let_mlflow_send_usage_data(tmp_path: Path, proxy: WatchingProxy) -> None:
    """MLOPS_IDE_MLFLOW_TELEMETRY=1: MLflow as it comes (and the proxy sees what it sends)."""
    run_mlflow_and_a_client(tmp_path, proxy, telemetry=True)

    assert [line for line in proxy.asked if TELEMETRY_HOST in line], proxy.asked
