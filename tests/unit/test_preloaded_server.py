"""The preloaded single-user server (startup/preloaded_server.py) through the hub's end
(mlops_ide.hub.preloaded_servers), as real processes: what a forked child becomes, what it
refuses, what the preloaded server reports and keeps. The servers it forks on the real
platform, and what their memory holds, are in tests/platform/test_os_accounts.py."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import jupyterhub
import pytest
import requests

from mlops_ide.hub import preloaded_servers
from mlops_ide.hub.preloaded_servers import PreloadedServers, Unavailable, shared_part
from mlops_ide.processes import descendants
from startup import preloaded_server
from tests.support.platform_tools import free_port

ROOT = Path(__file__).resolve().parents[2]
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="becoming another account needs root")

# A command the child execs (PYTHONWARNINGS differs from the preloaded server's, so it
# cannot run in place): says what it became.
PROBE = """
import json, os, sys
print(json.dumps({
    "uid": os.getresuid(), "gid": os.getresgid(), "groups": sorted(os.getgroups()),
    "session": os.getsid(0) == os.getpid(), "nice": os.getpriority(os.PRIO_PROCESS, 0),
    "cwd": os.getcwd(), "stdin": os.readlink("/proc/self/fd/0"), "secret": os.environ.get("PROBE_SECRET"),
    "pid": os.getpid(),
}), file=open(sys.argv[1], "w"))
if int(sys.argv[2]) < 0:  # a server that stays, with a process of its own in its session
    import subprocess, time; subprocess.Popen(["sleep", "120"]); time.sleep(120)
sys.exit(int(sys.argv[2]))
"""


@pytest.fixture
def shared() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="mlops-ide-preloaded-test-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder)


class HeardPid(PreloadedServers):
    """Says when the hub has its child's pid and has sent its request, then holds the hub's
    reading of its answer back a moment: a moment to give the spawn up at."""

    heard_pid: asyncio.Event | None = None

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.pids: list[int] = []

    async def message_with_fds(self, channel):
        said = await PreloadedServers.message_with_fds(channel)
        if self.heard_pid is not None:
            self.pids.append(int(said[0].split()[1]))
            self.heard_pid.set()
        return said

    async def line(self, channel):
        if self.heard_pid is not None and self.heard_pid.is_set():
            await asyncio.sleep(0.5)  # the hub gives up while the child becomes the server
        return await PreloadedServers.line(channel)


def servers() -> PreloadedServers:
    return PreloadedServers(sys.executable, {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)})


def probe_request(shared: Path, account: str | None, code: int = 0, **env: str) -> dict:
    return {
        "command": [sys.executable, "-c", PROBE, str(shared / "said.json"), str(code)],
        "env": {"PATH": os.environ["PATH"], "PYTHONWARNINGS": "default", **env},
        "account": account,
        "nice": 7,
        "cwd": str(shared),
    }


async def until_ended(process, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        assert time.monotonic() < deadline, "it did not end"
        await asyncio.sleep(0.05)
    return process.returncode


@as_root
def test_a_forked_server_becomes_its_account_in_a_session_of_its_own(shared: Path) -> None:
    async def scenario() -> None:
        preloaded = servers()
        try:
            process = await preloaded.spawn(probe_request(shared, "nobody", code=3, PROBE_SECRET="s3"))
            assert await until_ended(process) == 3  # its exit code, reported
        finally:
            preloaded.stop()

    asyncio.run(scenario())

    said = json.loads((shared / "said.json").read_text())
    assert said["uid"] == [65534] * 3 and said["gid"] == [65534] * 3
    assert said["groups"] == sorted(os.getgrouplist("nobody", 65534))  # nothing of root's
    assert said["session"] and said["nice"] == 7 and said["cwd"] == str(shared)
    assert said["stdin"] == "/dev/null" and said["secret"] == "s3"


@as_root
def test_a_request_it_cannot_take_fails_alone_and_the_next_is_served(shared: Path) -> None:
    async def scenario() -> None:
        preloaded = servers()
        try:
            with pytest.raises(RuntimeError, match=r"KeyError.*no-such-account"):
                await preloaded.spawn(probe_request(shared, "no-such-account"))
            huge = probe_request(shared, "nobody", BIG="x" * (preloaded_server.REQUEST_LIMIT + 1))
            with pytest.raises(RuntimeError, match="over"):
                await preloaded.spawn(huge)
            assert await until_ended(await preloaded.spawn(probe_request(shared, "nobody"))) == 0
        finally:
            preloaded.stop()

    asyncio.run(scenario())

    assert json.loads((shared / "said.json").read_text())["uid"] == [65534] * 3


def test_it_ends_with_the_hubs_end_and_starts_again_at_the_next_spawn(shared: Path) -> None:
    async def scenario() -> None:
        preloaded = servers()
        try:
            preloaded.launch()
            await asyncio.wait_for(preloaded.ready.wait(), 60)
            first = preloaded.process
            asyncio.get_running_loop().remove_reader(preloaded.control.fileno())
            preloaded.control.close()  # as when the hub goes: its end of the socket closes
            preloaded.control = None
            assert first.wait(30) == 0

            process = await preloaded.spawn(probe_request(shared, None))  # a new one forks it

            assert preloaded.process is not first and await until_ended(process) == 0
        finally:
            preloaded.stop()

    asyncio.run(scenario())


def test_a_preloaded_server_that_died_is_noticed_and_started_again(shared: Path) -> None:
    async def scenario() -> None:
        preloaded = servers()
        try:
            preloaded.launch()
            await asyncio.wait_for(preloaded.ready.wait(), 60)
            preloaded.process.kill()
            for _ in range(200):  # the hub hears its end
                if not preloaded.running:
                    break
                await asyncio.sleep(0.05)
            assert not preloaded.running and "it ended" in preloaded.problem

            assert await until_ended(await preloaded.spawn(probe_request(shared, None))) == 0
        finally:
            preloaded.stop()

    asyncio.run(scenario())


@as_root
def test_a_spawn_given_up_leaves_no_server_and_the_next_gets_its_own_pid(shared: Path) -> None:
    async def scenario() -> None:
        preloaded = HeardPid(sys.executable, {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)})
        try:
            preloaded.launch()
            await asyncio.wait_for(preloaded.ready.wait(), 60)
            for _ in range(3):  # given up once its child has said its pid (the hub's start_timeout)
                preloaded.heard_pid = asyncio.Event()
                spawn = asyncio.create_task(preloaded.spawn(probe_request(shared, "nobody", code=-1)))
                await asyncio.wait_for(preloaded.heard_pid.wait(), 30)
                await asyncio.sleep(0.2)  # it has answered, unread: it runs the server
                spawn.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await spawn
            with pytest.raises(TimeoutError):  # and at once
                await asyncio.wait_for(preloaded.spawn(probe_request(shared, "nobody", code=-1)), 0.001)
            await asyncio.sleep(1)
            (shared / "said.json").unlink(missing_ok=True)
            process = await preloaded.spawn(probe_request(shared, "nobody"))
            assert await until_ended(process) == 0
            said = json.loads((shared / "said.json").read_text())
            assert said["pid"] == process.pid  # the process the hub holds is the one it asked for
            assert descendants(preloaded.process.pid) == []  # every given-up child ended,
            assert len(preloaded.pids) >= 4 and not in_sessions(preloaded.pids)  # and what they started
        finally:
            preloaded.stop()

    asyncio.run(scenario())


def in_sessions(sessions: list[int]) -> list[int]:
    """The processes that run in those sessions (not the ended ones no parent reaped yet)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) in sessions and fields[0] != "Z":
                found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("hangs", ["before it is ready", "after it is ready"])
def test_a_preloaded_server_that_hangs_is_ended_and_servers_start_without_it(
    hangs: str, shared: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(preloaded_servers, "READY_TIMEOUT", 1.0)
    monkeypatch.setattr(preloaded_servers, "ANSWER_TIMEOUT", 1.0)
    python = shared / "python"  # as `python -m MODULE FD ROOM`: says ready or not, then hangs
    python.write_text(
        f"#!{sys.executable}\nimport os, sys, time\n"
        "if os.environ.get('SAY_READY'):\n    os.write(int(sys.argv[3]), b'ready\\n')\n"
        "time.sleep(600)\n"
    )
    python.chmod(0o755)
    env = {"PATH": os.environ["PATH"], **({"SAY_READY": "1"} if hangs.startswith("after") else {})}

    async def scenario() -> None:
        preloaded = PreloadedServers(str(python), env)
        try:
            with pytest.raises(Unavailable, match="within 1 s"):
                await preloaded.spawn(probe_request(shared, None))
            assert preloaded.process.poll() is not None and not preloaded.running  # ended
        finally:
            preloaded.stop()

    asyncio.run(scenario())


def test_the_server_and_its_children_get_its_environment_and_nothing_else(shared: Path) -> None:
    env = {"PATH": os.environ["PATH"], "JUPYTERHUB_USER": "a", "LONGER": "x" * 3000}
    pid = os.fork()
    if pid == 0:  # as a forked child becomes its server
        code = 1
        try:
            preloaded_server.become_environment(["jupyterhub-singleuser"], env)
            ran = subprocess.run(["env", "-0"], capture_output=True, check=True)  # no env=: libc's
            (shared / "env").write_bytes(ran.stdout)
            code = 0
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

    seen = [item.decode(errors="replace") for item in (shared / "env").read_bytes().split(b"\0") if item]
    assert sorted(seen) == sorted(f"{name}={value}" for name, value in env.items())


def test_what_a_fresh_interpreter_would_read_otherwise_sends_the_server_to_exec() -> None:
    here = shutil.which(preloaded_server.SINGLEUSER, path=str(Path(sys.executable).parent))
    started = {"PATH": "/usr/bin", "LANG": "C.UTF-8"}
    differs = preloaded_server.differs_from_a_fresh_interpreter

    assert differs(dict(started), started, here) == ""
    assert "PYTHONHASHSEED" in differs({**started, "PYTHONHASHSEED": "1"}, started, here)
    assert "LANG" in differs({**started, "LANG": "C"}, started, here)
    assert "LD_LIBRARY_PATH" in differs({**started, "LD_LIBRARY_PATH": "/x"}, started, here)
    assert "not the preloaded one's" in differs(dict(started), started, "/usr/bin/x")


def test_a_servers_own_variables_never_reach_the_preloaded_server() -> None:
    env = {
        "PATH": "/usr/bin",
        "JUPYTERHUB_API_TOKEN": "t",
        "JPY_API_TOKEN": "t",
        "JUPYTERHUB_USER": "a",
        "MLOPS_IDE_GIT_TOKEN": "t",
        "MLFLOW_TRACKING_TOKEN": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "HOME": "/home/a",
        "JUPYTERHUB_SINGLEUSER_APP": "jupyter_server",
    }

    assert shared_part(env) == {"PATH": "/usr/bin", "JUPYTERHUB_SINGLEUSER_APP": "jupyter_server"}


class StandInHubAPI(http.server.BaseHTTPRequestHandler):
    """The hub's API as a single-user server asks it: who holds this token (user `a`)."""

    def do_GET(self) -> None:
        body = json.dumps({"name": "a", "kind": "user", "scopes": ["access:servers!server=a/"], "groups": []})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-JupyterHub-Version", jupyterhub.__version__)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_POST = do_GET

    def log_message(self, *_: object) -> None:
        pass


@as_root
def test_a_server_run_in_place_is_the_users_own_and_trashes_into_their_home(shared: Path) -> None:
    """The real single-user server, forked and run in place (not exec'd), as nobody."""
    hub = http.server.ThreadingHTTPServer(("127.0.0.1", 0), StandInHubAPI)
    threading.Thread(target=hub.serve_forever, daemon=True).start()
    home = shared / "home"
    home.mkdir()
    os.chown(home, 65534, 65534)
    port = free_port()
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),  # the start wrapper's; it drops it
        "HOME": str(home),
        "JUPYTERHUB_API_TOKEN": "a-token",
        "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub.server_address[1]}/hub/api",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_PREFIX": "/user/a/",
        "JUPYTERHUB_USER": "a",
        "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-a",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/a/oauth_callback",
        "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}/user/a/",
        "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(["access:servers!server=a/"]),
    }
    request = {
        # JupyterHub turns the trash off; a team may turn it on
        "command": [sys.executable, "-m", "startup.start", "--FileContentsManager.delete_to_trash=True"],
        "env": env,
        "account": "nobody",
        "nice": 5,
        "cwd": str(home),
    }
    url = f"http://127.0.0.1:{port}/user/a/api"
    headers = {"Authorization": "token a-token"}

    async def scenario() -> None:
        preloaded = PreloadedServers(sys.executable, env)
        server = None
        try:
            server = await preloaded.spawn(request)
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(requests.ConnectionError):
                    if requests.get(f"{url}/status", headers=headers, timeout=5).status_code == 200:
                        break
                assert server.poll() is None and time.monotonic() < deadline
                await asyncio.sleep(0.1)
            proc = Path(f"/proc/{server.pid}")
            status = (proc / "status").read_text()
            assert "Uid:\t65534\t65534\t65534\t65534" in status and "CapEff:\t0000000000000000" in status
            assert "Gid:\t65534\t65534\t65534\t65534" in status
            assert (
                (proc / "cmdline").read_bytes().split(b"\0")[0].endswith(b"jupyterhub-singleuser")
            )  # in place
            assert b"\0JUPYTERHUB_USER=a\0" in b"\0" + (proc / "environ").read_bytes()
            control = os.readlink(f"/proc/{preloaded.process.pid}/fd/{preloaded_fd(preloaded)}")
            held = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
            theirs = {os.readlink(fd) for fd in Path(f"/proc/{preloaded.process.pid}/fd").iterdir()}
            outputs = {os.readlink(f"/proc/self/fd/{n}") for n in (1, 2)}  # the hub's: every server's
            assert control in theirs and not held & theirs - outputs - {os.devnull}
            (home / "notes.txt").write_text("x")
            os.chown(home / "notes.txt", 65534, 65534)

            deleted = requests.delete(f"{url}/contents/notes.txt", headers=headers, timeout=30)

            assert deleted.status_code == 204, deleted.text
            assert (home / ".local" / "share" / "Trash" / "files" / "notes.txt").exists()  # nobody's trash
            assert server.signal(signal.SIGTERM)
            await until_ended(server)
        finally:
            if server is not None:
                server.signal(signal.SIGKILL)
            preloaded.stop()

    try:
        asyncio.run(scenario())
    finally:
        hub.shutdown()


def preloaded_fd(preloaded: PreloadedServers) -> str:
    """The preloaded server's end of its socket with the hub (the descriptor it was given)."""
    return Path(f"/proc/{preloaded.process.pid}/cmdline").read_bytes().split(b"\0")[3].decode()
