"""The hub's end of the preloaded single-user server (startup/preloaded_server.py): one
process per hub that has imported the server once and forks each user's server from it.

The hub starts it with a socket pair (no path: nobody else can reach it), a minimal
environment (nothing of the hub's secrets: every server inherits its memory) and room for
the servers' command lines and environments. For each server: a new socket pair, one end
sent to it (the fork), the request written on the other (read by the forked child only),
its answer awaited. Its `PreloadedProcess` is what the spawner polls and signals, as it
would a Popen. If the preloaded server cannot start or has ended, `Unavailable` says why
and the spawner starts the server as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field

from mlops_ide.processes import is_alive

MODULE = "startup.preloaded_server"
COMMAND_ROOM = 4096  # bytes for a server's command line, as /proc/PID/cmdline shows it
ENVIRONMENT_ROOM = 1 << 16  # and for its environment (/proc/PID/environ)
STARTED_WITH = ("PATH", "PYTHONPATH", "LANG", "LC_ALL", "LC_CTYPE")
READY_TIMEOUT = 120.0  # its imports, on a machine busy with a crowd's logins
ANSWER_TIMEOUT = 30.0


class Unavailable(Exception):
    """The preloaded server cannot start this server (the spawner starts it itself)."""


@dataclass
class PreloadedProcess:
    """A server forked by the preloaded server: its pid and poll() (None while it runs,
    else its exit code), as a Popen's."""

    pid: int
    servers: PreloadedServers = field(repr=False)
    returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None and not self.servers.running and not is_alive(self.pid):
            self.returncode = 0  # its end was not reported (the preloaded server ended first)
        return self.returncode


class PreloadedServers:
    def __init__(self, python: str, env: Mapping[str, str]):
        self.python = python
        self.env = {name: env[name] for name in STARTED_WITH if name in env}
        self.process: subprocess.Popen | None = None
        self.control: socket.socket | None = None
        self.ready = asyncio.Event()
        self.running = False
        self.problem = ""
        self.turn = asyncio.Lock()
        self.forked: asyncio.Queue[int] = asyncio.Queue()
        self.processes: dict[int, PreloadedProcess] = {}
        self.buffer = b""

    def launch(self) -> None:
        """Start it (it imports for about a second) and listen to it."""
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
            return
        finally:
            theirs.close()
        ours.setblocking(False)
        self.control = ours
        self.running = True
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
            word, *rest = line.decode().split()
            if word == "ready":
                self.ready.set()
            elif word == "forked":
                self.forked.put_nowait(int(rest[0]))
            elif word == "exited" and int(rest[0]) in self.processes:
                self.processes.pop(int(rest[0])).returncode = int(rest[1])

    def ended(self, why: str) -> None:
        if self.control is not None:
            asyncio.get_running_loop().remove_reader(self.control.fileno())
            self.control.close()
        self.running = False
        self.problem = why
        if self.process is not None and self.process.poll() is not None:
            self.problem += f" (exit code {self.process.returncode})"
        self.ready.set()  # wakes those waiting for it: it is not running
        self.forked.put_nowait(0)

    async def spawn(self, request: dict) -> PreloadedProcess:
        """Fork a server for `request` (command, env, account, nice, cwd)."""
        if self.process is None and not self.problem:
            self.launch()
        try:
            await asyncio.wait_for(self.ready.wait(), READY_TIMEOUT)
        except TimeoutError:
            raise Unavailable(f"it was not ready within {READY_TIMEOUT:.0f} s") from None
        if not self.running:
            raise Unavailable(self.problem)
        ours, theirs = socket.socketpair()
        with ours:
            async with self.turn:
                try:
                    socket.send_fds(self.control, [b"s"], [theirs.fileno()])
                except OSError as error:
                    raise Unavailable(f"it could not be asked: {error}") from None
                finally:
                    theirs.close()
                pid = await self.forked.get()
            if not pid:
                raise Unavailable(self.problem)
            process = self.processes[pid] = PreloadedProcess(pid, self)
            ours.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_sendall(ours, json.dumps(request).encode() + b"\n")
            try:
                answer = await asyncio.wait_for(loop.sock_recv(ours, 65536), ANSWER_TIMEOUT)
            except TimeoutError:
                answer = b""
        if answer.strip() != b"ok":
            if not answer:  # stuck before it became the server: it never will
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            said = json.loads(answer).get("error", "") if answer.startswith(b"{") else "no answer"
            raise RuntimeError(f"the preloaded server's child did not become the server: {said}")
        return process

    def stop(self) -> None:
        """End it (the servers it forked live on, in their own sessions)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
