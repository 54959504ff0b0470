"""Local mode's spawner: user servers as local processes (as the user's own OS account
when the platform runs as root), whose whole process tree (code-server and its helpers
included) ends when they stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shlex
from pathlib import Path

from jupyterhub.spawner import SimpleLocalProcessSpawner, set_user_setuid
from jupyterhub.utils import random_port
from traitlets import Bool, Integer, Unicode

from mlops_ide import names
from mlops_ide.hub import service_tokens
from mlops_ide.hub.preloaded_servers import PreloadedProcess, PreloadedServers, Unavailable
from mlops_ide.machine import os_accounts
from mlops_ide.machine.state import compile_cache
from mlops_ide.processes import end_processes, session_members


class LocalVSCodeSpawner(SimpleLocalProcessSpawner):
    """A local process per user server, home under the state folder. With `os_accounts`
    (the platform runs as root) the server and all it starts run as the user's own OS
    account, made at the first start (mlops_ide.machine.os_accounts). On stop, every process left
    in the server's session ends too: code-server's extension host and file watcher would
    otherwise outlive it by up to a minute."""

    os_accounts = Bool(False, config=True, help="Run each server as the user's own OS account (root only).")
    git_token = Bool(
        False,
        config=True,
        help="Give git in the server its hub token for the platform's git service (MLOPS_IDE_GIT_TOKEN).",
    )
    mlflow_token = Bool(
        False,
        config=True,
        help="Give the server a hub token for MLflow's gate (MLFLOW_TRACKING_TOKEN, for MLflow's client).",
    )
    nice = Integer(
        5,
        config=True,
        help="Niceness of user servers and all they start: when a team's logins saturate the "
        "machine, the hub and the proxy (at 0) get the CPU first.",
    )
    starts_at_once = Integer(
        0,
        config=True,
        help="How many servers start at the same time (0: one per core); the others wait their "
        "turn, first come first served. Started all at once, a crowd's servers share the CPU and "
        "all finish late; in turns, the first are in VS Code in seconds.",
    )
    code_server_cache = Unicode(
        "",
        config=True,
        help="code-server's compile cache (mlops_ide.machine.state.compile_cache): each user's "
        "OS account is given its entries before its server starts.",
    )
    preloaded = Bool(
        False,
        config=True,
        help="Fork servers from a process that imported the single-user server once "
        "(startup/preloaded_server.py): ~0.6 CPU-s less per start. A server it cannot start "
        "starts as before, as a new process.",
    )
    start_turns: asyncio.Semaphore | None = None  # one for the hub, shared by every spawner
    preloaded_servers: PreloadedServers | None = None  # one for the hub
    forked: PreloadedProcess | None = None  # this server, when the preloaded server forked it

    return_when_listening = Bool(
        True,
        config=True,
        help="Return from start() once the server accepts connections (else as soon as its process exists).",
    )

    async def start(self):
        if LocalVSCodeSpawner.start_turns is None:
            LocalVSCodeSpawner.start_turns = asyncio.Semaphore(self.starts_at_once or os.cpu_count() or 1)
        async with LocalVSCodeSpawner.start_turns:  # waiting counts in start_timeout
            if self.os_accounts:
                await asyncio.get_running_loop().run_in_executor(
                    None, os_accounts.ensure_account, self.user.name, Path(self.home_dir)
                )
                if self.code_server_cache:
                    uid = pwd.getpwnam(os_accounts.system_name(self.user.name)).pw_uid
                    try:
                        compile_cache.share_with(Path(self.code_server_cache), uid)
                    except OSError as error:  # it only saves time
                        self.log.warning("code-server's compile cache not shared with %s: %s", uid, error)
            ip, port = await self.start_process()
            if self.return_when_listening:
                await self.until_listening(ip, port)
        return ip, port

    async def start_process(self) -> tuple[str, int]:
        """LocalProcessSpawner.start, with the server forked by the preloaded server (as
        Popen with this spawner's preexec would have made it) when it can."""
        if (
            not self.preloaded
            or self.shell_cmd
            or self.popen_kwargs
            or self.cmd[1:3] != ["-m", "startup.start"]
        ):
            return await super().start()
        if self.port == 0:
            self.port = random_port()
        command = [*self.cmd, *self.get_args()]
        env = self.get_env()
        if LocalVSCodeSpawner.preloaded_servers is None:
            LocalVSCodeSpawner.preloaded_servers = PreloadedServers(self.cmd[0], env)
        account = os_accounts.system_name(self.user.name) if self.os_accounts else None
        request = {
            "command": command,
            "env": env,
            "account": account,
            "nice": self.nice,
            "cwd": pwd.getpwnam(account).pw_dir if account else self.home_dir,
        }
        self.log.info("Spawning %s (preloaded)", shlex.join(command))
        try:
            self.forked = await LocalVSCodeSpawner.preloaded_servers.spawn(request)
        except Unavailable as why:
            self.log.warning("Starting %s's server without the preloaded server: %s", self.user.name, why)
            return await super().start()
        self.pid = self.forked.pid
        return (self.ip or "127.0.0.1", self.port)

    async def poll(self):
        if self.forked is not None:  # held by a pidfd; its exit code as the preloaded server saw it
            status = self.forked.poll()
            if status is not None:
                self.forked = None
                self.clear_state()
            return status
        return await super().poll()

    async def _signal(self, sig: int) -> bool:
        if self.forked is not None:  # by its pidfd: never another process that got its pid
            return self.forked.signal(sig)
        return await super()._signal(sig)

    def process_ended(self) -> bool:
        process = self.forked or self.proc
        return process is not None and process.poll() is not None

    async def until_listening(self, ip: str, port: int, step: float = 0.05) -> None:
        """Return once the server accepts connections (or its process ended, or start_timeout
        passed): the hub's first check then finds it up. Left to the hub, it polls with a
        backoff that doubles to seconds, and a login waits that long after the server is up."""
        deadline = asyncio.get_running_loop().time() + self.start_timeout
        while asyncio.get_running_loop().time() < deadline:
            if self.process_ended():
                return  # it died: the hub's own check says so
            try:
                _, writer = await asyncio.wait_for(asyncio.open_connection(ip or "127.0.0.1", port), 1)
            except (TimeoutError, OSError):
                await asyncio.sleep(step)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    def make_preexec_fn(self, name: str):
        become = (
            set_user_setuid(os_accounts.system_name(name))
            if self.os_accounts
            else super().make_preexec_fn(name)
        )
        nice = self.nice

        def preexec() -> None:  # in the server's new session, before it becomes the user
            with contextlib.suppress(OSError):  # a platform already at a higher nice keeps its own
                os.setpriority(os.PRIO_PROCESS, 0, nice)  # absolute: not the hub's; inherited
                # With autogroup scheduling (Debian's default) a niceness only counts inside
                # the session's group; the group's own nice is what weighs against the hub.
                with open("/proc/self/autogroup", "w") as autogroup:
                    autogroup.write(str(nice))
            become()

        return preexec

    def get_env(self) -> dict:
        env = super().get_env()
        if self.git_token:  # read by git's credential helper (startup/credential.py), never stored
            env["MLOPS_IDE_GIT_TOKEN"] = self.new_service_token(names.GIT_TOKEN_NOTE, names.GIT_SCOPE)
            env["MLOPS_IDE_GIT_USERNAME"] = self.user.name
        if self.mlflow_token:  # MLflow's client sends it as a bearer token
            env["MLFLOW_TRACKING_TOKEN"] = self.new_service_token(names.MLFLOW_TOKEN_NOTE, names.MLFLOW_SCOPE)
        return env

    def new_service_token(self, note: str, scope: str) -> str:
        return service_tokens.renew(self.user, self.db, note, scope)

    def user_env(self, env: dict) -> dict:
        env = super().user_env(env)  # HOME: the home folder; SHELL: bash (the account has none)
        if self.os_accounts:
            env["USER"] = env["LOGNAME"] = os_accounts.system_name(self.user.name)
        return env

    async def stop(self, now: bool = False) -> None:
        session = self.pid
        await super().stop(now=now)
        if session:
            leftovers = session_members(session)
            if leftovers:
                killed = end_processes(leftovers, grace=3.0)
                self.log.info(
                    "Ended %d leftover process(es) of %s's server (%d needed SIGKILL)",
                    len(leftovers),
                    self.user.name,
                    len(killed),
                )
