"""Local mode's logins: an account and a password per person (NativeAuthenticator,
`MLOPS_IDE_AUTH=native`, the default), or one password for everyone on loopback only
(`MLOPS_IDE_AUTH=shared`, for one person trying the platform)."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from hmac import compare_digest

import bcrypt
from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
from nativeauthenticator import NativeAuthenticator
from tornado import web


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
