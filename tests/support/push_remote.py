"""A local remote with the platform's push hooks, and the two services they ask (the DAG
check's sandbox, the push check), started as the supervisor starts them; no Airflow."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlops_ide import names
from mlops_ide.hub.modes import load
from mlops_ide.machine.components import airflow
from mlops_ide.machine.components.base import Inputs
from mlops_ide.machine.state.accounts import component_accounts
from mlops_ide.machine.state.code_copy import install_code
from mlops_ide.machine.state.layout import lock_down
from mlops_ide.machine.state.remote import ensure_local_remote, install_push_hooks, share_remote
from mlops_ide.machine.state.tools import Tools
from mlops_ide.settings import Settings
from mlops_ide.supervisor.runner import Process
from tests.support.gitrepos import git

READY = {"Airflow DAG check": "checking pushed DAGs", "Airflow push check": "reporting pushes"}


def platform_for(tmp_path: Path, accounts: bool = False, **values: str) -> Inputs:
    """The settings, tools and (with `accounts`, as root) the service accounts of a state
    folder under `tmp_path`, its remote made and its hooks installed, as `make up` does."""
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state"), **values})
    made: dict = {}
    if accounts:  # other accounts pass through the test's folders, as on a server
        settings.home.mkdir(parents=True, exist_ok=True)
        for folder in settings.home.parents:
            if folder.is_relative_to(tempfile.gettempdir()) and not folder.stat().st_mode & 0o001:
                folder.chmod(folder.stat().st_mode | 0o001)
        made = component_accounts(settings)
        lock_down(settings, accounts=True)
    remote, _ = ensure_local_remote(settings)
    if accounts:
        share_remote(remote, made[names.GIT_ACCOUNT])
    install_code(settings)
    install_push_hooks(settings, Tools.load())
    return Inputs(settings, Tools.load(), "a-password", made)


@contextmanager
def running(*services: Process, timeout: float = 60) -> Iterator[None]:
    """The services started as the supervisor starts them, each ready once its log says it
    listens; stopped (and what they left ended) at the end."""
    try:
        for service in services:
            service.start()
            deadline = time.monotonic() + timeout
            while READY[service.name] not in service.log.read_text(errors="replace"):
                assert service.proc.poll() is None, service.log.read_text()
                assert time.monotonic() < deadline, service.log.read_text()
                time.sleep(0.05)
        yield
    finally:
        for service in services:
            service.ask_to_stop()
            service.wait_stopped(time.monotonic() + 10)


def push_services(platform: Inputs, wait: float = 2.0) -> tuple[Process, Process]:
    """The DAG check's sandbox and the push check, as machine/components/airflow.py builds them."""
    airflow.write_passwords(platform)
    report = airflow.push_check(platform)
    report.argv += ["--wait", str(wait)]
    return airflow.dag_sandbox(platform), report


@contextmanager
def remote_with_hooks(
    tmp_path: Path, airflow_port: int, branch: str = "main", accounts: bool = False, **values: str
) -> Iterator[tuple[Path, Settings]]:
    """A fresh local remote with the platform's hooks and services, the push check asking an
    Airflow on `airflow_port` (nothing, or something that hangs); yields (a clone, settings).
    `values`: more settings (MLOPS_IDE_DAGS_FOLDER, say)."""
    platform = platform_for(
        tmp_path, accounts, MLOPS_IDE_AIRFLOW_PORT=str(airflow_port), MLOPS_IDE_REPO_BRANCH=branch, **values
    )
    with running(*push_services(platform)):
        clone = tmp_path / "clone"
        git(tmp_path, "clone", "--quiet", "--branch", branch, str(platform.settings.local_remote), str(clone))
        yield clone, platform.settings


def push(clone: Path, branch: str = "main", *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["git", "push", *options, "origin", branch], cwd=clone, capture_output=True, text=True, timeout=120
    )


def logs(settings: Settings) -> str:
    """The push log: the sandbox's checks and the push check's reports."""
    folder = settings.home / "logs"
    return "".join(
        (folder / name).read_text() for name in ("airflow-dag-check.log", "airflow-push-check.log")
    )


def processes_of_uid(uid: int) -> dict[int, str]:
    """Every live process (no zombie) whose real user is `uid`, with its status text. Read
    from the status (a process that is not dumpable has a /proc folder of root's)."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue  # gone while we looked
            uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()
            if int(uids[1]) == uid and "\nState:\tZ" not in status:
                found[int(entry)] = status
    return found
