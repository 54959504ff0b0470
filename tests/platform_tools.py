"""Stdlib-only helpers that every virtualenv's tests can use."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tools_file_value(name: str) -> str:
    """A path recorded by scripts/install.sh in .tools.env."""
    for line in (ROOT / ".tools.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == name:
            return value
    raise KeyError(f"{name} is not in .tools.env: run scripts/install.sh")


def start_logged(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen:
    """A process in a session of its own, its output appended to `log`. SIGINT is reset to
    its default: a test run started in the background (`cmd &`) ignores it, the child would
    inherit that, and the hub stops its services with SIGINT."""
    with open(log, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_default_sigint,
        )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    """Until `url` answers 200; fail with the end of `log` if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url} never answered:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM to the process's session, then wait."""
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout)


def github_signature(secret: bytes, body: bytes) -> str:
    """X-Hub-Signature-256 as GitHub computes it."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@contextlib.contextmanager
def running_push_webhook(
    log: Path, secret: str, airflow_url: str, password: str, **extra: str
) -> Iterator[str]:
    """`python -m mlops_ide.push_webhook` on a free port, as the hub runs it; yields its URL."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "MLOPS_IDE_IP": "127.0.0.1",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/push-webhook/",
        "MLOPS_IDE_GITHUB_WEBHOOK_SECRET": secret,
        "MLOPS_IDE_AIRFLOW_URL": airflow_url,
        # the local platform's Airflow takes passwords from its own account only
        "MLOPS_IDE_AIRFLOW_USERNAME": "mlops-ide-platform",
        "MLOPS_IDE_AIRFLOW_PASSWORD": password,
        "MLOPS_IDE_REPO_URL": "https://github.com/team/pipelines.git",  # as the hub passes it on
        **extra,
    }
    process = start_logged([sys.executable, "-m", "mlops_ide.push_webhook"], env, log)
    url = f"http://127.0.0.1:{port}/services/push-webhook/"
    try:
        wait_until_healthy(url, process, log, timeout=30)
        yield url
    finally:
        stop(process)
