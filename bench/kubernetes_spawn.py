"""Kubernetes mode's own cost on the way to VS Code: GitHub login and KubeSpawner's spawn
path (watches, PVC, pod, the token Secret, waiting for the pod), measured with the
stand-ins of tests/platform/test_kubernetes_spawn.py (GitHub, the Kubernetes API, a local kubelet
that runs the pod's container here). Image pulls and scheduling of a real cluster are
not in these figures; the single-user server and code-server are real.

    python bench/kubernetes_spawn.py [--users N]

Medians over N new users, each kept running (as the local bench does), of:
  - login with GitHub (stand-in)                   the OAuth round trip through the hub
  - login -> server ready (the hub's API says so)  cold: pod created, start hook, server
  - login -> VS Code HTML 200
  - stop (API) -> pod and its Secret gone
Compare with `bench/login_to_vscode.py` (the local process spawner). Prints figures only.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.support.local_kubelet import local_cluster  # noqa: E402


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=5)
    users = [f"user{n}" for n in range(parser.parse_args().users)]
    login, ready, vscode, stop = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp, local_cluster(Path(tmp), users) as cluster:
        sessions = {}
        for user in users:
            started = time.perf_counter()
            session, response = cluster.hub.log_in(user)
            assert response.status_code == 200, response.status_code
            login.append(time.perf_counter() - started)
            cluster.start_server(session, user)
            ready.append(time.perf_counter() - started)
            cluster.open_vscode(session, user)
            vscode.append(time.perf_counter() - started)
            sessions[user] = session
        for user, session in sessions.items():
            started = time.perf_counter()
            cluster.stop_server(session, user)
            stop.append(time.perf_counter() - started)
            assert not [key for key in cluster.api.objects if key[2].startswith(f"jupyter-{user}")]
    print(f"{len(users)} users, KubeSpawner against the stand-ins, 2 cores")
    print(f"login with GitHub (stand-in):            {median(login)}")
    print(f"login -> server ready (pod running), cold: {median(ready)}")
    print(f"login -> VS Code HTML 200, cold:         {median(vscode)}")
    print(f"stop -> pod and token Secret gone:       {median(stop)}")


if __name__ == "__main__":
    main()
