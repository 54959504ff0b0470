"""The preloaded single-user server (startup/preloaded_server.py) through the hub's end
(mlops_ide.hub.preloaded_servers), as real processes: what a forked child becomes, what it
refuses, what the preloaded server reports and keeps. The servers it forks on the real
platform, and what their memory holds, are in tests/platform/test_os_accounts.py."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_ide.hub.preloaded_servers import PreloadedServers, Unavailable
from startup import preloaded_server

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
}), file=open(sys.argv[1], "w"))
sys.exit(int(sys.argv[2]))
"""


@pytest.fixture
def shared() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="mlops-ide-preloaded-test-"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder)


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


def test_it_ends_with_the_hub_and_then_says_it_is_unavailable(shared: Path) -> None:
    async def scenario() -> None:
        preloaded = servers()
        preloaded.launch()
        await asyncio.wait_for(preloaded.ready.wait(), 60)
        preloaded.ended("the hub's end closed")  # as when the hub goes: its end of the socket closes

        assert preloaded.process.wait(30) == 0
        with pytest.raises(Unavailable, match="the hub's end closed"):
            await preloaded.spawn(probe_request(shared, None))

    asyncio.run(scenario())


def test_what_a_fresh_interpreter_would_read_otherwise_sends_the_server_to_exec() -> None:
    here = preloaded_server.shutil.which(preloaded_server.SINGLEUSER, path=str(Path(sys.executable).parent))
    same = dict(os.environ)

    assert preloaded_server.differs_from_a_fresh_interpreter(same, here) == ""
    assert "PYTHONHASHSEED" in preloaded_server.differs_from_a_fresh_interpreter(
        {**same, "PYTHONHASHSEED": "1"}, here
    )
    assert "LC_ALL" in preloaded_server.differs_from_a_fresh_interpreter({**same, "LC_ALL": "C.UTF-8x"}, here)
    assert "JUPYTERHUB_SINGLEUSER_APP" in preloaded_server.differs_from_a_fresh_interpreter(
        {**same, "JUPYTERHUB_SINGLEUSER_APP": "notebook"}, here
    )
    assert "not the preloaded one's" in preloaded_server.differs_from_a_fresh_interpreter(same, "/usr/bin/x")
    # PYTHONPATH is the start wrapper's, which it drops: no reason
    assert preloaded_server.differs_from_a_fresh_interpreter({**same, "PYTHONPATH": "/elsewhere"}, here) == ""
