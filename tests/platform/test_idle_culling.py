"""Idle culling that understands VS Code: an open VS Code tab nobody touches is idle, a
command running in its terminal is not. The pieces alone (`make test`), then the real
platform with a one-minute timeout and two users in headless Chromium (`make test-slow`:
it waits ~3.5 minutes of real time, beyond CI's budget)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil
import pytest
import requests

from mlops_ide.hub.idle_culling import ProxyWithoutActivity
from startup import server_activity
from tests.support.browser_tools import ARTIFACTS, log_in
from tests.support.local_platform import PlatformConfig, RunningPlatform, wait_for


def test_the_proxys_activity_is_left_out_of_what_the_hub_reads() -> None:
    route = ProxyWithoutActivity._reformat_routespec(
        ProxyWithoutActivity.__new__(ProxyWithoutActivity),
        "/user/alice/",
        {"target": "http://127.0.0.1:1", "jupyterhub": True, "user": "alice", "last_activity": "2026-11-30"},
    )

    assert route == {"routespec": "/user/alice/", "target": "http://127.0.0.1:1", "data": {"user": "alice"}}


def process_tree(shell_command: str) -> subprocess.Popen:
    """A stand-in for code-server's pty host (named as VS Code names it) with one shell."""
    host = (
        "import subprocess, sys, time\n"
        f"shell = subprocess.Popen(['sh', '-c', {shell_command!r}])\n"
        "time.sleep(60)\n"
    )
    return subprocess.Popen([sys.executable, "-c", host, "--type=ptyHost"])


@pytest.mark.parametrize(("command", "busy"), [("sleep 60", True), ("exec sleep 60", False)])
def test_a_command_running_in_a_terminal_is_activity_a_shell_at_its_prompt_is_not(
    command: str, busy: bool
) -> None:
    # `sleep 60` in a shell: the shell waits for its child (a command runs);
    # `exec sleep 60`: the shell itself, with no child (a prompt waiting for input)
    host = process_tree(command)
    try:
        wait_for(lambda: psutil.Process(host.pid).children(), 10, "the shell")
        time.sleep(0.3)
        assert server_activity.terminal_command_running(psutil.Process()) is busy
    finally:
        for child in psutil.Process(host.pid).children(recursive=True):
            child.kill()
        host.kill()
        host.wait()


def test_vscodes_activity_file_is_read_as_its_mtime(tmp_path: Path) -> None:
    path = server_activity.activity_file(tmp_path)
    assert server_activity.touched_at(path) is None
    path.parent.mkdir(parents=True)
    path.write_text("now\n")

    touched = server_activity.touched_at(path)

    assert touched is not None and abs((datetime.now(UTC) - touched).total_seconds()) < 5
    assert path == tmp_path / ".local" / "share" / "code-server" / "mlops-ide-activity"


PLATFORM = PlatformConfig("idle", {"MLOPS_IDE_IDLE_TIMEOUT": "60"})


def test_the_server_reports_vscodes_activity_file_and_the_hub_runs_the_culler(
    platform: RunningPlatform,
) -> None:
    """The pieces are wired on the real platform: the server's extension is loaded and reads
    the file VS Code's extension touches; the hub ignores the proxy's activity; the culler runs."""
    session = platform.login("alice")
    platform.open_vscode(session, "alice")
    token = platform.server_environ("alice")["JUPYTERHUB_API_TOKEN"]

    def server_last_activity() -> datetime:
        status = requests.get(
            f"{platform.url}/user/alice/api/status", headers={"Authorization": f"token {token}"}, timeout=30
        )
        return datetime.fromisoformat(status.json()["last_activity"].replace("Z", "+00:00"))

    time.sleep(1.5)
    file = server_activity.activity_file(platform.home / "homes" / "alice")
    touched = platform.terminal(
        "alice", "sh", "-c", f"mkdir -p {file.parent} && touch {file}", cwd=file.parents[3]
    )
    assert touched.returncode == 0, touched.stderr
    stamp = server_activity.touched_at(file)
    assert stamp is not None

    wait_for(
        lambda: server_last_activity() >= stamp, server_activity.TICK + 10, "the server to count the file"
    )
    hub_log = (platform.home / "logs" / "jupyterhub.log").read_text()
    assert "Using Proxy: mlops_ide.hub.idle_culling.ProxyWithoutActivity" in hub_log
    assert "--timeout=60" in hub_log and "Starting managed service idle-culler" in hub_log


def admin_token(platform: RunningPlatform) -> str:
    admin = platform.login("admin")
    made = admin.post(
        f"{platform.url}/hub/api/users/admin/tokens",
        json={"expires_in": 900, "note": "idle culling test"},
        headers={"X-XSRFToken": admin.cookies.get("_xsrf", path="/hub/")},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    return made.json()["token"]


def server_running(platform: RunningPlatform, token: str, user: str) -> bool:
    answer = requests.get(
        f"{platform.url}/hub/api/users/{user}", headers={"Authorization": f"token {token}"}, timeout=30
    )
    return bool(answer.json()["servers"])


def terminal_shell() -> bool:
    """Whether a shell runs in a VS Code terminal (a child of code-server's pty host)."""
    for process in psutil.process_iter(["cmdline"]):
        if server_activity.PTY_HOST in " ".join(process.info["cmdline"] or ()):
            with contextlib.suppress(psutil.Error):
                if process.children():
                    return True
    return False


def sleep_running(within: float = 0) -> bool:
    """Whether a `sleep 600` runs (bob's command), waiting up to `within` seconds for it."""
    deadline = time.monotonic() + within
    while True:
        if any(p.info["cmdline"] == ["sleep", "600"] for p in psutil.process_iter(["cmdline"])):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


@pytest.mark.slow  # ~3.5 min of real time: `make test-slow`
@pytest.mark.browser
def test_an_untouched_vscode_tab_is_culled_and_a_terminal_command_keeps_its_server(
    browser, platform: RunningPlatform
) -> None:
    pages = {}
    for user in ("alice", "bob"):
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        log_in(page, platform, user)
        page.wait_for_selector(".monaco-workbench", timeout=90_000)
        pages[user] = page
    (platform.home / "homes" / "alice" / "notes.md").write_text("alice's notes")
    terminal = pages["bob"]
    terminal.keyboard.press("Control+Backquote")  # View: Toggle Terminal
    wait_for(terminal_shell, 60, "the shell of bob's VS Code terminal")
    terminal.wait_for_timeout(1500)  # its prompt
    for _ in range(3):  # keys typed while the terminal still starts are lost: type until it runs
        terminal.locator(".xterm").first.click()
        terminal.keyboard.type("sleep 600\n")
        if sleep_running(within=10):
            break
    ARTIFACTS.mkdir(exist_ok=True)
    terminal.screenshot(path=str(ARTIFACTS / "idle-terminal.png"))
    assert sleep_running(), "bob's command runs in his VS Code terminal"
    started = time.monotonic()
    token = admin_token(platform)

    # alice's tab stays open, untouched: her server goes within the timeout and a few checks
    wait_for(
        lambda: not server_running(platform, token, "alice"), 300, "alice's idle server to be culled", step=5
    )
    culled_after = time.monotonic() - started

    assert culled_after > 50  # not before a minute of idleness (the tab was opened at the start)
    assert (platform.home / "homes" / "alice" / "notes.md").read_text() == "alice's notes"
    assert (platform.home / "homes" / "alice" / "pipelines" / ".git").is_dir()
    hub_log = (platform.home / "logs" / "jupyterhub.log").read_text()
    assert "Culling server alice (inactive for" in hub_log
    # bob typed his command after alice's tab was open: without the command running, his
    # server would go within ~40 s of hers (a minute after his last key, a check every 15 s)
    time.sleep(45)
    assert server_running(platform, token, "bob"), "a running terminal command kept bob's server"
    assert "Culling server bob" not in (platform.home / "logs" / "jupyterhub.log").read_text()
    for page in pages.values():
        page.close()
