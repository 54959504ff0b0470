"""What MLflow's gate costs a client: the same MLflow API calls straight to MLflow's Unix
socket (what only root and the pipeline's account can open) and through the gate with a hub
token (what everyone else does), alternating, on one platform. Prints medians and the ratio.

    python bench/mlflow_gate.py [--calls 50]
"""

from __future__ import annotations

import argparse
import http.client
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.support.local_platform import RunningPlatform  # noqa: E402

SEARCH = "/services/mlflow/api/2.0/mlflow/experiments/search?max_results=10"


def straight(sock: Path) -> float:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("localhost")
    connection.sock = socket.socket(socket.AF_UNIX)
    connection.sock.connect(str(sock))
    connection.request("GET", SEARCH, headers={"Host": "localhost"})
    assert connection.getresponse().status == 200
    connection.close()
    return time.perf_counter() - started


def gated(session: requests.Session, gate: str) -> float:
    started = time.perf_counter()
    assert session.get(gate + SEARCH, timeout=30).status_code == 200
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50)
    calls = parser.parse_args().calls
    with tempfile.TemporaryDirectory() as tmp:
        platform = RunningPlatform(Path(tmp) / "state", MLOPS_IDE_SERVICES="mlflow").start(timeout=120)
        try:
            token = (platform.home / "airflow-auth" / "mlflow_token").read_text().strip()
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {token}"
            gate = f"http://127.0.0.1:{platform.env['MLOPS_IDE_MLFLOW_PORT']}"
            sock = platform.home / "mlflow" / "sock"
            for _ in range(5):  # warm both paths
                straight(sock), gated(session, gate)
            direct, through = [], []
            for _ in range(calls):
                direct.append(straight(sock))
                through.append(gated(session, gate))
        finally:
            platform.stop()
    median_direct, median_gate = statistics.median(direct), statistics.median(through)
    print(f"{calls} experiments/search calls each, alternating")
    print(f"  straight to MLflow's socket: median {median_direct * 1000:.1f} ms")
    print(f"  through the gate, hub token: median {median_gate * 1000:.1f} ms")
    print(
        f"  the gate adds {(median_gate - median_direct) * 1000:.1f} ms ({median_gate / median_direct:.2f}x)"
    )


if __name__ == "__main__":
    main()
