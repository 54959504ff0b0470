"""Starting, stopping and restarting the platform: nothing left running, nothing lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlops_ide.processes import descendants, is_alive
from tests.support.gitrepos import git
from tests.support.local_platform import (
    ROOT,
    RunningPlatform,
    answers,
    free_port_base,
    platform_env,
    wait_for,
)


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment names ``text``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            blob = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if text.encode() in blob and is_alive(int(pid)) and int(pid) != os.getpid():
            found.append(int(pid))
    return found


def test_sigterm_stops_every_process_the_platform_started(tmp_path: Path) -> None:
    platform = RunningPlatform(tmp_path / "state").start()
    for user in ("alice", "bob"):
        platform.open_vscode(platform.login(user), user)
    started = descendants(platform.proc.pid)
    assert len(started) >= 6  # hub, proxy, and per user a server and code-server's processes

    assert platform.stop() == 0

    def leftovers() -> list[int]:
        return [pid for pid in started if is_alive(pid)]

    wait_for(lambda: not leftovers(), 10, "every process to end")
    assert processes_mentioning(str(platform.home)) == []
    assert "==> Stopping the platform" in platform.log()


def test_second_start_keeps_homes_remote_and_password(tmp_path: Path) -> None:
    home = tmp_path / "state"
    first = RunningPlatform(home).start()
    first.open_vscode(first.login("alice"), "alice")
    password = first.password
    notes = home / "homes" / "alice" / "pipelines" / "my-notes.txt"
    notes.write_text("work in progress\n")
    remote_head = git(home / "remote" / "pipelines.git", "rev-parse", "main")
    first.stop()

    second = RunningPlatform(
        home, MLOPS_IDE_GIT_PORT=first.env["MLOPS_IDE_GIT_PORT"]
    ).start()  # clones keep their URL
    try:
        assert second.password == password
        assert "local git remote" in second.log() and "(kept)" in second.log()
        assert git(home / "remote" / "pipelines.git", "rev-parse", "main") == remote_head
        # alice's account and password are kept too
        second.open_vscode(second.login("alice", first.passwords["alice"]), "alice")
        assert notes.read_text() == "work in progress\n"
        assert "up_to_date" in (home / "homes" / "alice" / "sync-status.md").read_text()
    finally:
        second.stop()


def test_hub_killed_is_restarted_by_the_platform(tmp_path: Path) -> None:
    platform = RunningPlatform(tmp_path / "state").start()
    try:
        hub = platform.service_pid(b"jupyterhub_config.py")
        os.kill(hub, signal.SIGKILL)
        killed = time.monotonic()

        wait_for(lambda: not is_alive(hub), 5, "the hub to die")
        wait_for(lambda: answers(f"{platform.url}/hub/api"), 30, "the hub to answer again")
        assert "JupyterHub exited with -9" in platform.log()
        assert time.monotonic() - killed < 30
        platform.login("alice")
    finally:
        platform.stop()


def run_up(tmp_path: Path, port: int, **settings: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mlops_ide.supervisor.up"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=platform_env(tmp_path / "state", port, **settings),
    )


def test_bad_settings_stop_the_platform_naming_each_variable(tmp_path: Path) -> None:
    result = run_up(
        tmp_path, 8000, MLOPS_IDE_PORT="eighty", MLOPS_IDE_MODE="cloud", MLOPS_IDE_ADMIN_USERS="ok,Not Valid"
    )

    assert result.returncode == 2
    assert "MLOPS_IDE_PORT='eighty' is not a port" in result.stdout
    assert "MLOPS_IDE_MODE='cloud'" in result.stdout
    assert "MLOPS_IDE_ADMIN_USERS" in result.stdout
    assert not (tmp_path / "state").exists()  # stopped before touching anything


def test_the_hub_alone_refuses_bad_settings_too(tmp_path: Path) -> None:
    env = platform_env(tmp_path / "state", 8000, MLOPS_IDE_IP="localhost-ish")
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"

    result = subprocess.run(
        [sys.executable, "-m", "jupyterhub", "-f", str(ROOT / "jupyterhub_config.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )

    assert result.returncode != 0
    assert "MLOPS_IDE_IP='localhost-ish' is not an IP address" in result.stderr


@pytest.mark.parametrize("offset, what", [(0, "MLOPS_IDE_PORT"), (1, "hub's internal API")])
def test_port_in_use_is_named(tmp_path: Path, offset: int, what: str) -> None:
    port = free_port_base()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port + offset))
        squatter.listen()

        result = run_up(tmp_path, port)

    assert result.returncode == 2
    assert f"port {port + offset} on 127.0.0.1" in result.stdout
    assert what in result.stdout and "is in use" in result.stdout


def test_connections_lingering_from_a_previous_run_do_not_block_the_port() -> None:
    from mlops_ide.hub.modes import load
    from mlops_ide.supervisor.up import check_ports_free

    port = free_port_base()
    with socket.socket() as server:  # a previous run: served a request, then went away
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server side closes first and keeps the port in TIME_WAIT
        client.close()
    assert (
        "TIME-WAIT"
        in subprocess.run(["ss", "-tan", f"sport = :{port}"], capture_output=True, text=True).stdout
    )

    assert check_ports_free(load({"MLOPS_IDE_PORT": str(port)})) == []
