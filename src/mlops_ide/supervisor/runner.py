"""Start the platform's processes, restart any that dies, and stop them all, leaving no
process behind.

They start at once, but for a process that names others in `after`: it starts once those
are ready (their start-up is mostly CPU, and on a warm state folder none waits for another
but for these few).

Each process runs in a session of its own, so a Ctrl-C in the terminal reaches only the
runner, which then stops the processes in reverse order (the hub stops its user
servers and proxy itself). The supervisor is a child subreaper: whatever a process leaves
orphaned is re-parented to it, and a final sweep ends every descendant still alive.
"""

from __future__ import annotations

import http.client
import os
import pwd
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mlops_ide.machine.os_accounts import as_account
from mlops_ide.processes import (
    become_subreaper,
    descendants,
    end_processes,
    reap_zombie_children,
    session_members,
)


def answers_on_unix_socket(ready_url: str) -> bool:
    """Whether `http+unix://<quoted socket path>/<path>` answers 2xx (MLflow on its socket)."""
    parts = urllib.parse.urlsplit(ready_url)
    path = urllib.parse.unquote(parts.netloc)
    connection = http.client.HTTPConnection("localhost", timeout=2)
    try:
        connection.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.sock.settimeout(2)
        connection.sock.connect(path)
        connection.request("GET", parts.path or "/", headers={"Host": "localhost"})
        return 200 <= connection.getresponse().status < 300
    except OSError:
        return False
    finally:
        connection.close()


@dataclass
class Process:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    ready_url: str | None = None  # answers 2xx once the process is usable
    account: pwd.struct_passwd | None = None  # the OS account it runs as; None: the supervisor's
    sockets: tuple[socket.socket, ...] = ()  # listening sockets made for it, kept across restarts
    # a listening socket given as its stdin, inetd's way: for a program that starts its server
    # in a child and closes every other descriptor on the way (`mlflow server`)
    stdin: socket.socket | None = None
    groups: tuple[int, ...] = ()  # supplementary groups of `account`
    umask: int = -1  # -1: the supervisor's
    stop_signal: int = signal.SIGTERM
    after: tuple[str, ...] = ()  # names of the processes that must be ready before it starts
    proc: subprocess.Popen | None = field(default=None, repr=False)
    restarts: int = 0
    next_start: float = 0.0  # when a dead process is due to start again (0: not dead)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:  # opened here: the account never holds the log's folder
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL if self.stdin is None else self.stdin.fileno(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=[listening.fileno() for listening in self.sockets],
                umask=self.umask,
                **as_account(self.account, self.groups),
            )

    def is_ready(self) -> bool:
        if self.ready_url is None:
            return self.proc is not None and self.proc.poll() is None
        if self.ready_url.startswith("http+unix://"):
            return answers_on_unix_socket(self.ready_url)
        # A probe of our own process on this machine: a self-signed certificate is fine.
        context = ssl._create_unverified_context() if self.ready_url.startswith("https://127.") else None
        try:
            with urllib.request.urlopen(self.ready_url, timeout=2, context=context) as response:
                return 200 <= response.status < 300
        except (urllib.error.URLError, OSError):
            return False

    def ask_to_stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)

    def wait_stopped(self, deadline: float) -> None:
        """Wait for the exit asked for; past ``deadline``, kill it."""
        if self.proc is None:
            return
        try:
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Supervisor:
    def __init__(self, processes: list[Process], say: Callable[[str], None] = print):
        self.processes = processes
        self.say = say
        self.stopping = threading.Event()

    def handle_signals(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: self.stopping.set())

    def start(self, ready_timeout: float = 90.0, poll: float = 0.05) -> bool:
        """Start every process whose `after` are ready, all at once; False (said why) when
        one exits or is not ready within `ready_timeout` of its start, or a stop is asked."""
        become_subreaper()
        known = {process.name for process in self.processes}
        unknown = [f"{p.name} after {name}" for p in self.processes for name in p.after if name not in known]
        if unknown:
            raise ValueError(f"no process of that name: {'; '.join(unknown)}")
        ready: set[str] = set()
        waiting = list(self.processes)
        starting: dict[str, float] = {}  # started, not yet ready: when each started
        while waiting or starting:
            for process in [p for p in waiting if ready.issuperset(p.after)]:
                waiting.remove(process)
                process.start()
                starting[process.name] = time.monotonic()
            if not starting:  # what waits can never start: a cycle of `after`
                waits = "; ".join(f"{p.name} waits for {', '.join(p.after)}" for p in waiting)
                self.say(f"!! nothing can start: {waits}")
                return False
            for process in [p for p in self.processes if p.name in starting]:
                started = starting[process.name]
                if process.is_ready():
                    del starting[process.name]
                    ready.add(process.name)
                    self.say(f"   {process.name} ready in {time.monotonic() - started:.1f} s")
                elif process.proc.poll() is not None:
                    self.say(
                        f"!! {process.name} exited with {process.proc.returncode} while starting; "
                        f"see {process.log}"
                    )
                    return False
                elif time.monotonic() - started > ready_timeout:
                    self.say(f"!! {process.name} not ready after {ready_timeout:.0f} s; see {process.log}")
                    return False
            if self.stopping.is_set():
                return False
            if starting:
                time.sleep(poll)
        return True

    def watch(self, poll: float = 0.5) -> None:
        """Until a stop is asked for: restart any process that died, with a back-off."""
        while not self.stopping.wait(poll):
            reap_zombie_children(keep={s.proc.pid for s in self.processes if s.proc})
            now = time.monotonic()
            for process in self.processes:
                if process.proc.poll() is None:
                    continue
                if process.next_start == 0.0:  # just found dead: wait 0, 1, 3, 7, 15, then 30 s
                    # Its children (mlflow's and Airflow's servers fork workers) would hold the
                    # port and make the restart fail: end what is left of its session first.
                    end_processes(session_members(process.proc.pid), grace=3.0)
                    delay = min(30.0, 2.0 ** min(process.restarts, 5) - 1)
                    process.next_start = now + delay
                    self.say(
                        f"!! {process.name} exited with {process.proc.returncode}; "
                        f"restarting in {delay:.0f} s (see {process.log})"
                    )
                elif now >= process.next_start:
                    process.restarts += 1
                    process.next_start = 0.0
                    process.start()
                    self.say(f"   {process.name} restarted")

    def stop(self, grace: float = 20.0) -> None:
        """Ask every process to stop at once (they do not depend on each other to stop),
        wait for them, then end anything they left behind."""
        for process in reversed(self.processes):
            process.ask_to_stop()
        deadline = time.monotonic() + grace
        for process in self.processes:
            process.wait_stopped(deadline)
        leftovers = descendants(os.getpid())
        if leftovers:
            killed = end_processes(leftovers, grace=5.0)
            self.say(f"   ended {len(leftovers)} leftover process(es) ({len(killed)} needed SIGKILL)")
        reap_zombie_children()
