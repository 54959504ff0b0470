"""code-server started with the user's server (startup/vscode_early.py): the entry
jupyter-server-proxy gets, with a stand-in code-server that really serves HTTP on its Unix
socket, and what happens without the start wrapper's request or without code-server."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from startup import vscode_early

# A code-server stand-in: answers any GET on the Unix socket it is given, as code-server does.
SERVE = """
import http.server, socketserver, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "9"); self.end_headers()
        self.wfile.write(b"workbench")
    def log_message(self, *args): pass
class Server(socketserver.UnixStreamServer):
    def get_request(self):
        request, _ = super().get_request()
        return request, ("local", 0)
Server(sys.argv[1], Handler).serve_forever()
"""


def stand_in_entry(seen: list[dict]) -> dict:
    """An entry as jupyter-vscode-proxy makes it, its command the stand-in above."""

    def command(port: int, unix_socket: str) -> list[str]:
        seen.append({"port": port, "unix_socket": unix_socket})
        return [sys.executable, "-c", SERVE, "{unix_socket}"]

    return {"command": command, "unix_socket": True, "timeout": 300, "update_last_activity": False}


def get(socket_path: str, timeout: float = 30) -> bytes:
    """GET / on the Unix socket, once it listens."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = socket.socket(socket.AF_UNIX)
            conn.connect(socket_path)
            break
        except OSError:
            conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)

    class Connection(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = conn

    client = Connection("localhost")
    client.request("GET", "/")
    return client.getresponse().read()


def stop(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, 15)


def test_without_the_wrappers_request_the_entry_is_left_as_it_is() -> None:
    seen: list[dict] = []
    entry = stand_in_entry(seen)
    environ = {"PATH": os.environ["PATH"]}

    assert vscode_early.proxy_entry(entry, environ) is entry
    assert seen == []  # nothing started: jupyter-server-proxy starts it at the first request


def test_code_server_answers_before_any_request_and_the_proxy_waits_on_it() -> None:
    seen: list[dict] = []
    environ = {"PATH": os.environ["PATH"], vscode_early.EARLY: "1"}

    entry = vscode_early.proxy_entry(stand_in_entry(seen), environ)

    pid = int(entry["command"][1].removeprefix("--pid="))
    try:
        assert entry["command"] == ["tail", f"--pid={pid}", "-f", "/dev/null"]
        assert entry["unix_socket"] == seen[0]["unix_socket"]
        assert entry["timeout"] == 300 and entry["update_last_activity"] is False
        assert get(entry["unix_socket"]) == b"workbench"
        folder = Path(entry["unix_socket"]).parent
        assert folder.stat().st_uid == os.geteuid()
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700  # no one else reaches the socket
    finally:
        stop(pid)


def test_the_proxys_waiter_ends_when_code_server_ends() -> None:
    """jupyter-server-proxy then sees VS Code gone, as when it started code-server itself;
    code-server is reaped by the server, so the waiter does not wait on a zombie."""
    environ = {"PATH": os.environ["PATH"], vscode_early.EARLY: "1"}
    entry = vscode_early.proxy_entry(stand_in_entry([]), environ)
    get(entry["unix_socket"])
    waiter = subprocess.Popen(entry["command"])
    pid = int(entry["command"][1].removeprefix("--pid="))

    stop(pid)

    assert waiter.wait(timeout=10) == 0


def test_nothing_the_server_starts_asks_for_a_second_code_server() -> None:
    """The request is taken out of the server's environment: a terminal's `jupyter server`
    (or code-server's own children) must not start another code-server."""
    environ = {"PATH": os.environ["PATH"], vscode_early.EARLY: "1"}
    entry = vscode_early.proxy_entry(stand_in_entry([]), environ)
    pid = int(entry["command"][1].removeprefix("--pid="))
    try:
        started_with = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert vscode_early.EARLY not in environ
        assert not any(item.startswith(vscode_early.EARLY.encode()) for item in started_with)
        seen: list[dict] = []
        assert vscode_early.proxy_entry(stand_in_entry(seen), environ)["unix_socket"] is True
        assert seen == []
    finally:
        stop(pid)


@pytest.mark.parametrize("asked", ["0", "", "yes"])
def test_only_the_wrappers_exact_request_starts_it(asked: str) -> None:
    seen: list[dict] = []
    vscode_early.proxy_entry(stand_in_entry(seen), {vscode_early.EARLY: asked})

    assert seen == []


def test_without_code_server_the_server_still_starts_and_the_proxy_says_so_later() -> None:
    """jupyter-vscode-proxy raises when code-server is not on PATH; the server's
    configuration must still load (today's behaviour: an error at the first request)."""

    def missing(port: int, unix_socket: str) -> list[str]:
        raise FileNotFoundError("Can not find code-server in PATH")

    entry = {"command": missing, "unix_socket": True}
    folders = lambda: set(Path(tempfile.gettempdir()).glob("mlops-ide-vscode-*"))  # noqa: E731
    before = folders()

    assert vscode_early.proxy_entry(entry, {vscode_early.EARLY: "1"}) is entry
    assert folders() == before  # no socket folder left behind
