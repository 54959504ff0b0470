"""The hub's classes for local mode: one shared password, and user servers whose whole
process tree (code-server and its helpers included) ends when they stop."""

from __future__ import annotations

import asyncio
from hmac import compare_digest

from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
from jupyterhub.handlers import BaseHandler
from jupyterhub.spawner import SimpleLocalProcessSpawner
from nativeauthenticator import NativeAuthenticator
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from mlops_ide.processes import end_processes, session_members


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
    handler uses `self.statsd`, which JupyterHub 6 no longer has (every login was a 500)."""

    def get_handlers(self, app) -> list:
        return [(path, handler) for path, handler in super().get_handlers(app) if path != r"/login"]


class LocalVSCodeSpawner(SimpleLocalProcessSpawner):
    """SimpleLocalProcessSpawner that, on stop, also ends every process left in the
    server's session (each server starts a session of its own): code-server's extension
    host and file watcher would otherwise outlive it by up to a minute."""

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
    """GET /hub/platform/health: {"<service>": "healthy" | "<what is wrong>"} for the
    services beside the hub. Checked by the hub, because the browser cannot reach them
    across origins; for logged-in users only."""

    def initialize(self, checks: dict[str, str]) -> None:
        self.checks = checks  # service name -> health URL

    @web.authenticated
    async def get(self) -> None:
        names = list(self.checks)
        results = await asyncio.gather(*(check_health(self.checks[name]) for name in names))
        self.set_header("Content-Type", "application/json")
        self.write(dict(zip(names, results, strict=True)))


async def check_health(url: str) -> str:
    try:
        response = await AsyncHTTPClient().fetch(url, request_timeout=3, connect_timeout=2)
    except HTTPClientError as error:
        return f"error {error.code}"
    except OSError:
        return "unreachable"
    return "healthy" if response.code == 200 else f"error {response.code}"
