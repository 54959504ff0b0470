"""Stdlib-only helpers that every virtualenv's tests can use (those the pipeline's tests
need too live in tests/pipeline/servers.py, which goes into the pipeline repository)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.pipeline.servers import free_port as free_port
from tests.pipeline.servers import start_logged as start_logged
from tests.pipeline.servers import stop as stop
from tests.pipeline.servers import wait_until_healthy as wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
RESULT_PREFIX = "mlops-ide step result: "  # as src/skin_cancer/tasks.py prints a step's result


def step_result(stdout: str) -> object:
    """The result `python -m skin_cancer.tasks <step> '<json>'` printed: its last line's JSON."""
    last = stdout.strip().splitlines()[-1]
    assert last.startswith(RESULT_PREFIX), f"no result line; the last line: {last!r}"
    return json.loads(last.removeprefix(RESULT_PREFIX))


def tools_file_value(name: str) -> str:
    """A path recorded by scripts/install.sh in .tools.env."""
    for line in (ROOT / ".tools.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == name:
            return value
    raise KeyError(f"{name} is not in .tools.env: run scripts/install.sh")


def github_signature(secret: bytes, body: bytes) -> str:
    """X-Hub-Signature-256 as GitHub computes it."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@contextlib.contextmanager
def running_push_webhook(
    log: Path, secret: str, airflow_url: str, password: str, **extra: str
) -> Iterator[str]:
    """`python -m mlops_ide.hub_services.push_webhook` on a free port, as the hub runs it; yields its URL."""
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
    process = start_logged([sys.executable, "-m", "mlops_ide.hub_services.push_webhook"], env, log)
    url = f"http://127.0.0.1:{port}/services/push-webhook/"
    try:
        wait_until_healthy(url, process, log, timeout=30)
        yield url
    finally:
        stop(process)
