"""The hub's classes for local mode: one shared password, and user servers whose whole
process tree (code-server and its helpers included) ends when they stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from hmac import compare_digest
from pathlib import Path

import bcrypt
from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
from jupyterhub.handlers import BaseHandler
from jupyterhub.spawner import SimpleLocalProcessSpawner, set_user_setuid
from nativeauthenticator import NativeAuthenticator
from sqlalchemy import event
from sqlalchemy.engine import Engine
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse
from traitlets import Bool, Integer

from mlops_ide import os_accounts, service_tokens
from mlops_ide.processes import end_processes, session_members
from mlops_ide.services import HealthCheck, Waiting
from mlops_ide.services.git import SCOPE as GIT_SCOPE
from mlops_ide.services.mlflow import SCOPE as MLFLOW_SCOPE


def commit_without_waiting_for_the_disk() -> None:
    """The hub's SQLite database in WAL mode, synchronous=NORMAL: a commit no longer waits
    for an fsync, which on a disk busy with a team's server starts (clones, caches) took the
    hub's event loop a quarter of the time (py-spy, bench/many_users.py 20). Still atomic
    and never corrupt; a power cut may lose the last commits (a token, a server's state)."""
    if not event.contains(Engine, "connect", sqlite_pragmas):
        event.listen(Engine, "connect", sqlite_pragmas)


def sqlite_pragmas(connection, _record) -> None:
    if isinstance(connection, sqlite3.Connection):
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


class LocalPasswordAuthenticator(SharedPasswordAuthenticator):
    """JupyterHub's shared-password check, with one password for everyone: the names in
    ``admin_users`` log in with it too and are admins (the base class would demand a
    second, admin-only password). Local mode is one trusted machine; Kubernetes mode
    logs people in with GitHub instead."""

    def check_allow_config(self) -> None:
        """The base class warns that admins cannot log in without an admin password;
        here they can, so only the checks of Authenticator itself apply."""
        super(SharedPasswordAuthenticator, self).check_allow_config()

    async def authenticate(self, handler, data):
        username = self.normalize_username(data["username"])
        if not self.user_password or not compare_digest(data["password"], self.user_password):
            return None
        return {"name": username, "admin": username in self.admin_users, "groups": []}


class LocalNativeAuthenticator(NativeAuthenticator):
    """NativeAuthenticator (an account and a password per person, signup with an admin's
    approval, lockout) behind JupyterHub's own login page: NativeAuthenticator 1.3's login
    handler uses `self.statsd`, which JupyterHub 6 no longer has (every login was a 500).
    Its pages that change accounts on a GET (approve, discard) refuse requests another site
    started, which JupyterHub's XSRF check lets through for page loads."""

    # bcrypt (cost 12) takes ~0.3 s of CPU per check: in the hub's event loop 20 logins at
    # once froze every page and API call for seconds. Checks run here instead, as many at
    # once as there are cores, so a flood of logins queues without stopping the hub.
    password_checks = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="password")

    async def authenticate(self, handler, data):
        """NativeAuthenticator's check (authorized, not locked out, the password, a second
        factor if set up), with bcrypt run off the event loop (it releases the GIL). The
        attempt counts before the check: guesses sent at once cannot pass the lockout while
        the first ones are being checked; a success clears it."""
        username = self.normalize_username(data["username"])
        user = self.get_user(username)
        if not user or (self.allowed_failed_logins and self.is_blocked(username)):
            return None
        self.add_login_attempt(username)
        valid = await asyncio.get_running_loop().run_in_executor(
            self.password_checks, password_matches, data["password"], user.password
        )
        if self.get_user(username) is not user:  # removed while the check ran
            return None
        if valid and user.is_authorized and (not user.has_2fa or user.is_valid_token(data.get("2fa"))):
            self.successful_login(username)
            return username
        return None

    def get_handlers(self, app) -> list:
        return [
            (path, same_site_only(handler) if path.startswith((r"/authorize/", r"/discard/")) else handler)
            for path, handler in super().get_handlers(app)
            if path != r"/login"
        ]


def password_matches(password: str, stored: bytes) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), stored)
    except ValueError:  # over bcrypt's 72 bytes, or a stored value that is no bcrypt hash
        return False


def same_site_only(handler: type) -> type:
    class SameSiteOnly(handler):
        def prepare(self):
            site = self.request.headers.get("Sec-Fetch-Site", "same-origin")  # scripts send none
            if site not in ("same-origin", "none"):
                raise web.HTTPError(403, "account changes come from the hub's own pages only")
            return super().prepare()

    SameSiteOnly.__name__ = f"SameSiteOnly{handler.__name__}"
    return SameSiteOnly


GIT_TOKEN_NOTE = "mlops-ide: git, for the user's server"
MLFLOW_TOKEN_NOTE = "mlops-ide: mlflow, for the user's server"


class LocalVSCodeSpawner(SimpleLocalProcessSpawner):
    """A local process per user server, home under the state folder. With `os_accounts`
    (the platform runs as root) the server and all it starts run as the user's own OS
    account, made at the first start (mlops_ide.os_accounts). On stop, every process left
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
    start_turns: asyncio.Semaphore | None = None  # one for the hub, shared by every spawner

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
            ip, port = await super().start()
            if self.return_when_listening:
                await self.until_listening(ip, port)
        return ip, port

    async def until_listening(self, ip: str, port: int, step: float = 0.05) -> None:
        """Return once the server accepts connections (or its process ended, or start_timeout
        passed): the hub's first check then finds it up. Left to the hub, it polls with a
        backoff that doubles to seconds, and a login waits that long after the server is up."""
        deadline = asyncio.get_running_loop().time() + self.start_timeout
        while asyncio.get_running_loop().time() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
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
            env["MLOPS_IDE_GIT_TOKEN"] = self.new_service_token(GIT_TOKEN_NOTE, GIT_SCOPE)
            env["MLOPS_IDE_GIT_USERNAME"] = self.user.name
        if self.mlflow_token:  # MLflow's client sends it as a bearer token
            env["MLFLOW_TRACKING_TOKEN"] = self.new_service_token(MLFLOW_TOKEN_NOTE, MLFLOW_SCOPE)
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


class PlatformHealthHandler(BaseHandler):
    """GET /hub/platform/health: {"<service>": "healthy" | "waiting: <what is missing>" |
    "<what is wrong>"} for the services beside the hub. Checked by the hub, because the
    browser cannot reach them across origins; for logged-in users only."""

    def initialize(self, checks: dict[str, HealthCheck]) -> None:
        self.checks = checks  # service title -> how to check it

    @web.authenticated
    async def get(self) -> None:
        names = list(self.checks)
        results = await asyncio.gather(
            *(check_health(self.checks[name].url, self.checks[name].waiting) for name in names)
        )
        self.set_header("Content-Type", "application/json")
        self.write(dict(zip(names, results, strict=True)))


WAITING = "waiting: "  # how a waiting state starts; the home page shows it in yellow


async def check_health(url: str, waiting: Waiting | None = None) -> str:
    """ "healthy" for a 200; for the answer `waiting` names, "waiting: " and what is missing;
    else what is wrong ("error <status>", "unreachable")."""
    try:
        response = await AsyncHTTPClient().fetch(url, request_timeout=3, connect_timeout=2)
    except HTTPClientError as error:
        if waiting is not None and answers_waiting(error.response, waiting):
            return WAITING + waiting.says
        return f"error {error.code}"
    except OSError:
        return "unreachable"
    return "healthy" if response.code == 200 else f"error {response.code}"


def answers_waiting(response: HTTPResponse | None, waiting: Waiting) -> bool:
    """Whether an error answer is the service's waiting one: its status and JSON detail."""
    if response is None or response.code != waiting.status:
        return False
    try:
        return json.loads(response.body).get("detail") == waiting.detail
    except (ValueError, AttributeError):  # not JSON, or not an object
        return False
