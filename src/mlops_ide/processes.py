"""Finding and ending process trees from /proc, without extra dependencies.

Why: a single-user server's code-server leaves its extension host and file watcher
running for 10-60 s after it stops, and `airflow` workers outlive their parent. What we
start must end with us, so we find every process by its session or its ancestry.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from dataclasses import dataclass

PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    session: int


def process_table() -> list[Proc]:
    table = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone while we looked
        if fields[0] == "Z":
            continue  # a zombie is dead already; its parent reaps it
        table.append(Proc(int(entry), int(fields[1]), int(fields[3])))
    return table


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (children, grandchildren, …)."""
    children: dict[int, list[int]] = {}
    for proc in process_table():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def session_members(session: int) -> list[int]:
    """Every live process of a session: they keep it after their parent dies."""
    return [proc.pid for proc in process_table() if proc.session == session and proc.pid != os.getpid()]


def end_processes(pids: list[int], grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL whatever is left after ``grace`` seconds.
    Returns the pids that had to be killed."""
    for pid in pids:
        send(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if is_alive(pid)]
        time.sleep(0.05)
    for pid in alive:
        send(pid, signal.SIGKILL)
    return alive


def is_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def send(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def reap_zombie_children(keep: set[int] = frozenset()) -> None:
    """Collect our dead children (orphans included, once we are their subreaper), but
    not those in ``keep``, whose Popen objects wait for them. Never waitpid(-1): it would
    steal those statuses."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in keep:
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(int(entry), os.WNOHANG)


def become_subreaper() -> None:
    """Orphans of our descendants are re-parented to us, not to init, so that
    `descendants(os.getpid())` still finds them when we stop."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


async def until_stopped() -> None:
    """Wait for SIGTERM or SIGINT: how a service's event loop learns to end cleanly."""
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
