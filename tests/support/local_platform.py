"""The real platform for tests: `python -m mlops_ide.supervisor.up` on free ports with its own state
folder, and an HTTP client that logs in the way a browser does."""

from __future__ import annotations

import base64
import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import requests

from mlops_ide.processes import descendants, is_alive
from tests.support.platform_tools import start_logged

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]


def wait_for(check: Callable[[], T | None], timeout: float, what: str, step: float = 0.1) -> T:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:.0f} s for {what}")
        time.sleep(step)


def answers(url: str) -> bool:
    """True when ``url`` answers 200 now."""
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def free_port_base() -> int:
    """A port with the next two free as well (the hub's API and the proxy's API)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        if base > 65000:
            continue
        taken = False
        for port in (base, base + 1, base + 2):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    taken = True
        if not taken:
            return base
    raise RuntimeError("no three free ports in a row")


def platform_env(home: Path, port: int, **extra: str) -> dict[str, str]:
    """The hub alone unless a test asks for MLOPS_IDE_SERVICES; free ports for each."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_IDE_")}
    env.update(
        MLOPS_IDE_HOME=str(home),
        MLOPS_IDE_PORT=str(port),
        PYTHONPATH=f"{ROOT}/src:{ROOT}",
        MLOPS_IDE_SERVICES="none",
        MLOPS_IDE_VSCODE_GALLERY="off",  # this machine reaches no extension gallery
    )
    env.update(extra)
    env.setdefault("MLOPS_IDE_GIT_PORT", str(free_port_base()))  # the git service runs with the hub
    if env["MLOPS_IDE_SERVICES"] != "none":
        env.setdefault("MLOPS_IDE_AIRFLOW_PORT", str(free_port_base()))
        env.setdefault("MLOPS_IDE_MLFLOW_PORT", str(free_port_base()))
        env.setdefault("MLOPS_IDE_SERVING_PORT", str(free_port_base()))
        env.setdefault("MLOPS_IDE_APP_PORT", str(free_port_base()))
    return env


class RunningPlatform:
    """`make up` minus the install step, in a session of its own."""

    def __init__(self, home: Path, **settings: str):
        self.home = home
        self.port = free_port_base()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = platform_env(home, self.port, **settings)
        self.output = home.parent / f"up-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self.passwords: dict[str, str] = {}  # accounts added by add_user()

    def start(self, timeout: float = 90) -> RunningPlatform:
        self.home.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # users' own OS accounts pass through to their homes, as on a server
            for folder in self.home.parents:
                if folder.is_relative_to(tempfile.gettempdir()) and not folder.stat().st_mode & 0o001:
                    folder.chmod(folder.stat().st_mode | 0o001)
        self.proc = start_logged(
            [sys.executable, "-m", "mlops_ide.supervisor.up"], self.env, self.output, cwd=ROOT
        )
        deadline = time.monotonic() + timeout
        while "mlops-ide is up" not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"platform did not come up:\n{self.log()}")
            time.sleep(0.2)
        return self

    def service_pid(self, marker: bytes) -> int:
        """The pid of the platform's own child whose command line contains ``marker``."""
        for pid in descendants(self.proc.pid):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == str(self.proc.pid) and marker in cmdline:
                return pid
        raise AssertionError(f"no service of the platform runs {marker!r}")

    def log(self) -> str:
        return self.output.read_text() if self.output.exists() else ""

    @property
    def password(self) -> str:
        return (self.home / "password").read_text().strip()

    @property
    def airflow_url(self) -> str:
        """Airflow's API on this machine, under the prefix the hub serves it at."""
        return f"http://127.0.0.1:{self.env['MLOPS_IDE_AIRFLOW_PORT']}/services/airflow"

    @property
    def airflow_password(self) -> str:
        """Airflow's own admin password (not the hub's: a DAG can read it)."""
        return (self.home / "airflow-auth" / "platform_password").read_text().strip()

    def stop(self, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def users(self, *args: str) -> subprocess.CompletedProcess:
        """`python -m mlops_ide.supervisor.users ARGS` against this platform's state folder."""
        return subprocess.run(
            [sys.executable, "-m", "mlops_ide.supervisor.users", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def add_user(self, username: str, *flags: str) -> str:
        """A new account made from the command line, as an operator would; its password."""
        result = self.users("add", username, *flags)
        assert result.returncode == 0, result.stderr
        self.passwords[username] = result.stdout.splitlines()[-1]
        return self.passwords[username]

    def password_of(self, username: str) -> str:
        """The first admin's password, or the user's own (made on first use)."""
        admins = self.env.get("MLOPS_IDE_ADMIN_USERS", "admin").split(",")
        if username == admins[0] or self.env.get("MLOPS_IDE_AUTH") == "shared":
            return self.password
        return self.passwords.get(username) or self.add_user(username)

    def login(self, username: str, password: str | None = None, timeout: float = 30) -> requests.Session:
        session = requests.Session()
        session.get(f"{self.url}/hub/login", timeout=timeout)
        response = session.post(
            f"{self.url}/hub/login",
            data={
                "username": username,
                "password": password or self.password_of(username),
                "_xsrf": session.cookies.get("_xsrf"),
            },
            allow_redirects=False,
            timeout=timeout,
        )
        assert response.status_code == 302, f"login of {username} failed: {response.status_code}"
        return session

    def server_pid(self, username: str) -> int:
        """The pid of `username`'s running single-user server."""
        for pid in descendants(self.proc.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            if (
                b"jupyterhub-singleuser" in cmdline
                and f"\0JUPYTERHUB_USER={username}\0".encode() in b"\0" + environ
            ):
                return pid
        raise AssertionError(f"{username} has no running server")

    def server_environ(self, username: str) -> dict[str, str]:
        """The environment of `username`'s running server: what a terminal in their VS Code
        gets (their hub token for the git service included)."""
        raw = Path(f"/proc/{self.server_pid(username)}/environ").read_bytes()
        return dict(item.split("=", 1) for item in raw.decode().split("\0") if "=" in item)

    def terminal(self, username: str, *argv: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
        """`argv` as in a terminal of `username`'s VS Code: their server's environment, and
        their own OS account when the platform runs as root."""
        environ = {**self.server_environ(username), "GIT_TERMINAL_PROMPT": "0", **env}
        who = {}
        try:
            account = pwd.getpwnam(environ.get("USER", ""))
        except KeyError:  # no account of its own: the server runs as the platform's
            account = None
        if account and os.geteuid() == 0 and account.pw_uid != 0:
            groups = os.getgrouplist(account.pw_name, account.pw_gid)
            who = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": groups}
        return subprocess.run(
            list(argv), cwd=cwd, env=environ, capture_output=True, text=True, timeout=120, **who
        )

    def open_vscode(
        self, session: requests.Session, username: str, timeout: float = 120
    ) -> requests.Response:
        """Start the user's server if needed and return VS Code's workbench page."""
        deadline = time.monotonic() + timeout
        session.get(f"{self.url}/hub/spawn/{username}", timeout=timeout)
        while True:
            response = session.get(f"{self.url}/user/{username}/vscode/", timeout=60)
            if response.status_code == 200 and "/user/" in response.url and "workbench" in response.text:
                return response
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"VS Code of {username} not ready: {response.status_code} {response.url}"
                )
            time.sleep(0.3)


def vscode_websocket(platform: RunningPlatform, session: requests.Session, username: str) -> int:
    """Open VS Code's websocket through the proxy and the user's server, as the workbench
    does (an HTTP upgrade with the user's cookies); the status of the upgrade (101: open)."""
    query = f"reconnectionToken={uuid.uuid4()}&reconnection=false&skipWebSocketFrames=false"
    path = f"/user/{username}/vscode/?{query}"
    cookies = "; ".join(f"{cookie.name}={cookie.value}" for cookie in session.cookies)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{platform.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
        f"Sec-WebSocket-Version: 13\r\nOrigin: {platform.url}\r\nCookie: {cookies}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", platform.port), timeout=60) as sock:
        sock.sendall(request.encode())
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    status_line = head.split(b"\r\n", 1)[0].split()
    return int(status_line[1]) if len(status_line) > 1 else 0


def log_in_to_vscode(
    platform: RunningPlatform, username: str, started: float | None = None
) -> dict[str, float]:
    """One person's way in, as the browser goes: the login form, the spawn, the wait on
    the server's progress stream, VS Code's workbench HTML, its websocket. Seconds from
    ``started`` (now if not given) to each step; raises naming the step that failed.
    Waits as a browser does (minutes), not a script's 30 s."""
    started = time.perf_counter() if started is None else started
    timings: dict[str, float] = {}
    step = "login"
    try:
        session = platform.login(username, timeout=300)
        timings[step] = time.perf_counter() - started
        step = "ready"
        session.get(f"{platform.url}/hub/spawn/{username}", timeout=300)
        wait_for_progress(platform, session, username)
        timings[step] = time.perf_counter() - started
        step = "vscode_html"
        response = session.get(f"{platform.url}/user/{username}/vscode/", timeout=300)
        if response.status_code != 200 or "workbench" not in response.text:
            raise AssertionError(f"VS Code answered {response.status_code} at {response.url}")
        timings[step] = time.perf_counter() - started
        step = "websocket"
        status = vscode_websocket(platform, session, username)
        if status != 101:
            raise AssertionError(f"VS Code's websocket answered {status}, not 101")
        timings[step] = time.perf_counter() - started
    except (AssertionError, requests.RequestException, OSError) as error:
        raise AssertionError(
            f"{username}, at {step} after {time.perf_counter() - started:.1f} s: {error}"
        ) from error
    return timings


def wait_for_progress(platform: RunningPlatform, session: requests.Session, username: str) -> None:
    """Follow the server's progress stream, as the spawn-pending page does, until it is ready."""
    xsrf = session.cookies.get("_xsrf", path="/hub/") or session.cookies.get("_xsrf") or ""
    with session.get(
        f"{platform.url}/hub/api/users/{username}/server/progress",
        headers={"X-XSRFToken": xsrf, "Accept": "text/event-stream"},
        stream=True,
        timeout=300,
    ) as progress:
        if progress.status_code != 200:
            raise AssertionError(f"the progress stream answered {progress.status_code}")
        for line in progress.iter_lines():
            event = json.loads(line[5:]) if line.startswith(b"data:") else {}
            if event.get("failed"):
                raise AssertionError(f"the spawn failed: {event.get('message')}")
            if event.get("ready"):
                return
    raise AssertionError("the progress stream ended before the server was ready")


@dataclass(frozen=True)
class PlatformConfig:
    """How a test module's platform starts and stops: the module says it in `PLATFORM`
    and asks for the `platform` fixture (tests/conftest.py), one platform per module."""

    name: str  # its state folder's name under pytest's temporary folder
    settings: dict[str, str] = field(default_factory=dict)  # MLOPS_IDE_* beyond the test defaults
    timeout: float = 90  # seconds until "mlops-ide is up"
    stops_cleanly: bool = False  # `make up` exits 0 when stopped
    leaves_no_process: bool = False  # every process it started ends with it
    before_start: Callable[[], object] | None = None  # e.g. build an image first
    after_stop: Callable[[RunningPlatform], object] | None = None  # a last check of what it left


@contextmanager
def started_platform(config: PlatformConfig, parent: Path) -> Iterator[RunningPlatform]:
    """A platform started in `parent` as `config` says, stopped (and checked) on the way out."""
    if config.before_start is not None:
        config.before_start()
    running = RunningPlatform(parent / "state", **config.settings).start(timeout=config.timeout)
    try:
        yield running
    finally:
        started = descendants(running.proc.pid)
        code = running.stop()
        if config.stops_cleanly:
            assert code == 0
        if config.leaves_no_process:
            wait_for(lambda: not [pid for pid in started if is_alive(pid)], 15, "every process to end")
        if config.after_stop is not None:
            config.after_stop(running)


def every_component_healthy(platform: RunningPlatform) -> bool:
    """The hub's API, MLflow through its gate, and each part of Airflow by its own health report."""
    mlflow = f"http://127.0.0.1:{platform.env['MLOPS_IDE_MLFLOW_PORT']}/services/mlflow"  # its gate
    try:
        health = requests.get(f"{platform.airflow_url}/api/v2/monitor/health", timeout=2).json()
        return (
            requests.get(f"{platform.url}/hub/api", timeout=2).status_code == 200
            and requests.get(f"{mlflow}/health", timeout=2).status_code == 200
            and all(
                health[part]["status"] == "healthy"
                for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")
            )
        )
    except (requests.RequestException, ValueError, KeyError, TypeError):
        return False
