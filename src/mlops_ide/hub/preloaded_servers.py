"""The hub's end of the preloaded single-user server (startup/preloaded_server.py): one
process per hub that has imported the server once and forks each user's server from it.

The hub starts it with a socket pair (no path: nobody else can reach it), the environment
every server shares (none of a user's: its memory is every server's) and room for the
servers' command lines and environments. For each server: a new socket pair, one end sent
to it (the fork); on the other it sends the child's pid with a pidfd it opened before it
could reap the child (a reused pid cannot fool it), then the child reads its request and
answers. A `PreloadedProcess` is what the spawner polls and signals. If the preloaded
server cannot start, has ended or does not answer in time (it is then ended), `Unavailable`
says why and the spawner starts the server as before; it is started again at the next
spawn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

MODULE = "startup.preloaded_server"
COMMAND_ROOM = 4096  # bytes for a server's command line, as /proc/PID/cmdline shows it
ENVIRONMENT_ROOM = 1 << 16  # and for its environment (/proc/PID/environ)
READY_TIMEOUT = 30.0  # its imports (~1 s), on a machine busy with a crowd's logins; the
# spawner's start_timeout (120 s) leaves time to start the server as before after it
ANSWER_TIMEOUT = 30.0
# A server's own part of its environment: the rest is every server's, the preloaded
# server's own, and a server whose rest differs starts afresh.
OWN_NAMES = {"HOME", "USER", "LOGNAME", "SHELL", "MLOPS_IDE_GIT_USERNAME"}
OWN_WORDS = ("TOKEN", "SECRET", "PASSWORD")


def own_to_the_server(name: str) -> bool:
    return (
        name in OWN_NAMES
        or any(word in name for word in OWN_WORDS)
        or (name.startswith(("JUPYTERHUB_", "JPY_")) and not name.startswith("JUPYTERHUB_SINGLEUSER_"))
    )


def shared_part(env: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in env.items() if not own_to_the_server(name)}


class Unavailable(Exception):
    """The preloaded server cannot start this server (the spawner starts it itself)."""


@dataclass
class PreloadedProcess:
    """A server forked by the preloaded server, held by a pidfd: poll() (None while it
    runs, else its exit code as the preloaded server reports it, or 0 when it cannot any
    more) and signal()."""

    pid: int
    pidfd: int
    servers: PreloadedServers = field(repr=False)
    returncode: int | None = None
    reported: int | None = None

    def poll(self) -> int | None:
        if self.returncode is not None or not select.select([self.pidfd], [], [], 0)[0]:
            return self.returncode
        if self.reported is None and self.servers.running and self.servers.processes.get(self.pid) is self:
            return None  # it ended; its exit code is on its way from the preloaded server
        self.returncode = self.reported if self.reported is not None else 0
        self.close()
        return self.returncode

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1

    def end_session(self) -> None:
        """Kill it and what it started in its session (a given-up spawn: nobody will stop
        it), and let go of it."""
        if self.pidfd >= 0 and not select.select([self.pidfd], [], [], 0)[0]:
            # While it lives its pid is no other group's: its own once it called setsid
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
        self.signal(signal.SIGKILL)
        if self.servers.processes.get(self.pid) is self:
            del self.servers.processes[self.pid]
        self.close()

    def signal(self, sig: int) -> bool:
        """Send `sig`; whether it still ran."""
        if self.poll() is not None or self.pidfd < 0:
            return False
        try:
            signal.pidfd_send_signal(self.pidfd, sig)
        except ProcessLookupError:
            return False
        return True


class PreloadedServers:
    def __init__(self, python: str, env: Mapping[str, str]):
        self.python = python
        self.env = shared_part(env)
        self.process: subprocess.Popen | None = None
        self.control: socket.socket | None = None
        self.ready = asyncio.Event()
        self.problem = ""
        self.processes: dict[int, PreloadedProcess] = {}
        self.buffer = b""

    @property
    def running(self) -> bool:
        return self.control is not None

    def launch(self) -> None:
        """Start it (it imports for about a second) and listen to it."""
        self.ready, self.problem, self.buffer = asyncio.Event(), "", b""
        ours, theirs = socket.socketpair()
        env = {**self.env, "PRELOADED_SERVER_ROOM": "x" * ENVIRONMENT_ROOM}
        try:
            self.process = subprocess.Popen(
                [self.python, "-m", MODULE, str(theirs.fileno()), " " * COMMAND_ROOM],
                env=env,
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,  # the hub's Ctrl-C is not its
            )
        except OSError as error:
            self.problem = f"it could not start: {error}"
            ours.close()
            self.ready.set()
            return
        finally:
            theirs.close()
        ours.setblocking(False)
        self.control = ours
        asyncio.get_running_loop().add_reader(ours.fileno(), self.heard)

    def heard(self) -> None:
        try:
            data = self.control.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.ended("it ended")
            return
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            words = line.decode(errors="replace").split()
            if words == ["ready"]:
                self.ready.set()
            elif len(words) == 3 and words[0] == "exited" and words[1].isdigit():
                process = self.processes.pop(int(words[1]), None)
                if process is not None:
                    process.reported = int(words[2]) if words[2].lstrip("-").isdigit() else 0

    def ended(self, why: str) -> None:
        """It ended, or is of no use any more and is ended: spawns start their servers as
        before until the next spawn starts it again."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.control is not None:
            asyncio.get_running_loop().remove_reader(self.control.fileno())
            self.control.close()
            self.control = None
        self.problem = why
        if self.process is not None and self.process.poll() is not None:
            self.problem += f" (exit code {self.process.returncode})"
        self.ready.set()  # wakes those waiting for it: it is not running

    async def spawn(self, request: dict) -> PreloadedProcess:
        """Fork a server for `request` (command, env, account, nice, cwd)."""
        if not self.running:  # never started, or ended: (re)start it
            self.launch()
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await self.ready.wait()
        except TimeoutError:
            self.ended(f"it was not ready within {READY_TIMEOUT:.0f} s")
            raise Unavailable(self.problem) from None
        if not self.running:
            raise Unavailable(self.problem)
        ours, theirs = socket.socketpair()
        with ours:
            try:
                socket.send_fds(self.control, [b"s"], [theirs.fileno()])
            except OSError as error:
                raise Unavailable(f"it could not be asked: {error}") from None
            finally:
                theirs.close()
            ours.setblocking(False)
            try:
                hello, fds = await self.message_with_fds(ours)
            except TimeoutError:
                self.ended(f"it forked no server within {ANSWER_TIMEOUT:.0f} s")
                raise Unavailable(self.problem) from None
            except OSError as error:
                hello, fds = f"({error})".encode(), []
            words = hello.split()
            if len(words) != 2 or words[0] != b"pid" or not words[1].isdigit() or len(fds) != 1:
                for fd in fds:
                    os.close(fd)
                raise Unavailable(f"it forked no server: {hello[:100]!r}")
            process = PreloadedProcess(int(words[1]), fds[0], self)
            try:
                self.processes[process.pid] = process
                with contextlib.suppress(OSError):  # it stopped reading: it says why below
                    await asyncio.get_running_loop().sock_sendall(
                        ours, json.dumps({**request, "shared": shared_part(request["env"])}).encode() + b"\n"
                    )
                answer = await self.line(ours)
            except (TimeoutError, OSError) as error:
                answer = f"({error or 'nothing within the time'})".encode()
            except BaseException:  # cancelled (the hub's start timeout), or the child is gone
                process.end_session()
                raise
        if answer != b"ok":
            process.end_session()
            said = json.loads(answer).get("error", "") if answer.startswith(b"{") else repr(answer[:100])
            raise RuntimeError(f"the preloaded server's child did not become the server: {said}")
        return process

    @staticmethod
    async def message_with_fds(channel: socket.socket) -> tuple[bytes, list[int]]:
        """The preloaded server's one message on a server's channel, with its descriptors."""
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        loop.add_reader(channel.fileno(), lambda: readable.done() or readable.set_result(None))
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                await readable
        finally:
            loop.remove_reader(channel.fileno())
        data, fds, _, _ = socket.recv_fds(channel, 1024, 1)
        return data.strip(), fds

    @staticmethod
    async def line(channel: socket.socket) -> bytes:
        """One line from the child (without its newline), or what came before it ended."""
        data = b""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(ANSWER_TIMEOUT):
            while not data.endswith(b"\n"):
                chunk = await loop.sock_recv(channel, 65536)
                if not chunk:
                    break
                data += chunk
        return data.strip()

    def stop(self) -> None:
        """End it (the servers it forked live on, in their own sessions)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
