"""Airflow's login is the hub's: an auth manager that lets people in through JupyterHub.

Airflow's UI is served under the hub at /services/airflow/. Someone without an Airflow
session is sent to the hub (OAuth, the hub service `airflow` is the client; no consent
page, no second password) and comes back as their hub name: hub admins as Airflow's
ADMIN, everyone else as USER (see and trigger DAGs, read logs, clear runs; no connections,
variables, pools or configuration). The platform's own calls (the push check, the tests)
keep logging in with a password through `/auth/token`, as the simple auth manager they
extend does, for the accounts in its passwords file only.

A hub login's Airflow session (a JWT, valid 24 h) carries the hub's OAuth token of that
login, and every request's user is what the hub says about that token now (hub_logins.py:
asked at most every 30 s): removed from the hub, demoted or logged out of it, a person loses
Airflow or its admin role within about 30 s (60 s while the hub is silent, then refused).

Configured in Airflow's own scheme ([mlops_ide] in airflow.cfg or AIRFLOW__MLOPS_IDE__*):
hub_url (the hub as browsers reach it), hub_api_url (as this process does), client_id,
client_secret_file (the hub service's token, which is its OAuth client secret).
Runs inside Airflow's API server (its virtualenv): imports Airflow and hub_logins only.
"""

from __future__ import annotations

import base64
import functools
import hmac
import json
import logging
import secrets
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from airflow.api_fastapi.app import AUTH_MANAGER_FASTAPI_APP_PREFIX, get_cookie_path
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager
from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
from airflow.configuration import conf
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse
from jwt import InvalidTokenError

from mlops_ide.in_airflow.hub_logins import HubLogins, hub_user_asker

STATE_COOKIE = "mlops_ide_hub_oauth_state"
LOGIN_PATH = "/hub/login"
CALLBACK_PATH = "/hub/callback"
HUB_TOKEN_CLAIM = "hub_token"  # in the JWT of a hub login: that login's hub OAuth token

log = logging.getLogger(__name__)


def setting(key: str) -> str:
    return conf.get("mlops_ide", key)


def callback_url() -> str:
    return setting("hub_url").rstrip("/") + AUTH_MANAGER_FASTAPI_APP_PREFIX + CALLBACK_PATH


def client_secret() -> str:
    with open(setting("client_secret_file")) as secret:
        return secret.read().strip()


def hub_call(path: str, token: str | None = None, form: dict[str, str] | None = None) -> dict:
    """One call to the hub's API (this machine or the cluster: no proxy in between)."""
    request = urllib.request.Request(
        setting("hub_api_url").rstrip("/") + path,
        data=urllib.parse.urlencode(form).encode() if form else None,
        headers={"Authorization": f"token {token}"} if token else {},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def remembered_login(state: str, next_url: str) -> str:
    """The state cookie: the OAuth state, and where to go after (cookie-safe characters only)."""
    return f"{state}.{base64.urlsafe_b64encode(next_url.encode()).decode()}"


def recall_login(cookie: str) -> dict[str, str]:
    state, _, encoded = cookie.partition(".")
    try:
        next_url = base64.urlsafe_b64decode(encoded.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        next_url = ""
    return {"state": state, "next": next_url}


class HubUser(SimpleAuthManagerUser):
    """Someone logged in through the hub. `hub_token` is that login's hub OAuth token: it may
    say who they are and open Airflow through the hub, nothing more (the user's own, in their
    own cookie or the API token they asked Airflow for)."""

    def __init__(self, *, username: str, role: str | None, hub_token: str) -> None:
        super().__init__(username=username, role=role)
        self.hub_token = hub_token


def airflow_user(model: dict[str, Any], hub_token: str) -> HubUser:
    """The Airflow user for a hub user: hub admins are ADMIN, everyone else USER."""
    role = "ADMIN" if model.get("admin") else "USER"
    return HubUser(username=model["name"], role=role, hub_token=hub_token)


class HubAuthManager(SimpleAuthManager):
    @functools.cached_property
    def hub_logins(self) -> HubLogins:
        return HubLogins(hub_user_asker(setting("hub_api_url")))

    def serialize_user(self, user: SimpleAuthManagerUser) -> dict[str, Any]:
        claims = super().serialize_user(user)
        if isinstance(user, HubUser):
            claims[HUB_TOKEN_CLAIM] = user.hub_token
        return claims

    def deserialize_user(self, token: dict[str, Any]) -> SimpleAuthManagerUser:
        if HUB_TOKEN_CLAIM in token:
            return HubUser(username=token["sub"], role=token["role"], hub_token=token[HUB_TOKEN_CLAIM])
        # without a hub login, only a password account: a session a hub login made before
        # sessions carried its token would otherwise keep its role until it expires
        if token["sub"] not in {user.username for user in self.get_users()}:
            raise ValueError(f"{token['sub']!r} is no password account of Airflow: log in through the hub")
        return super().deserialize_user(token)

    async def get_user_from_token(self, token: str) -> BaseUser:
        """The JWT's user (signature, expiry, revocation checked by Airflow); for a hub login,
        as the hub says now: its role in the JWT is never used."""
        user = await super().get_user_from_token(token)
        if not isinstance(user, HubUser):
            return user
        model = await self.hub_logins.current(user.hub_token)
        if model is None:
            log.warning("Airflow session of %s refused: the hub no longer confirms its login", user.username)
            raise InvalidTokenError(f"the hub login of {user.username} ended: log in through the hub again")
        return airflow_user(model, user.hub_token)

    def get_url_login(self, **kwargs: Any) -> str:
        login = AUTH_MANAGER_FASTAPI_APP_PREFIX + LOGIN_PATH
        next_url = kwargs.get("next_url")
        return f"{login}?{urllib.parse.urlencode({'next': next_url})}" if next_url else login

    def get_url_logout(self) -> str | None:
        return setting("hub_url").rstrip("/") + "/hub/logout"

    def get_fastapi_app(self) -> FastAPI | None:
        from airflow.api_fastapi.auth.managers.simple.routes.login import login_router
        from airflow.api_fastapi.core_api.security import is_safe_url

        app = FastAPI(title="mlops-ide: Airflow's login through the hub")
        app.include_router(login_router)  # /token: the platform's own password logins

        @app.get(LOGIN_PATH, include_in_schema=False)
        def hub_login(request: Request) -> RedirectResponse:
            state = secrets.token_urlsafe(24)
            next_url = request.query_params.get("next") or conf.get("api", "base_url", fallback="/")
            query = urllib.parse.urlencode(
                {
                    "client_id": setting("client_id"),
                    "redirect_uri": callback_url(),
                    "response_type": "code",
                    "state": state,
                }
            )
            response = RedirectResponse(setting("hub_url").rstrip("/") + f"/hub/api/oauth2/authorize?{query}")
            value = remembered_login(state, next_url if is_safe_url(next_url, request) else "")
            secure = setting("hub_url").startswith("https://")
            response.set_cookie(
                STATE_COOKIE, value, path=get_cookie_path(), secure=secure, httponly=True, samesite="lax"
            )
            return response

        @app.get(CALLBACK_PATH, include_in_schema=False)
        def hub_callback(request: Request, code: str = "", state: str = "") -> RedirectResponse:
            remembered = recall_login(request.cookies.get(STATE_COOKIE, ""))
            if not code or not state or not hmac.compare_digest(state, remembered["state"]):
                raise HTTPException(400, "this login is stale or not yours: open Airflow from the hub again")
            try:
                token = hub_call(
                    "/oauth2/token",
                    form={
                        "client_id": setting("client_id"),
                        "client_secret": client_secret(),
                        "grant_type": "authorization_code",
                        "code": code,
                        "redirect_uri": callback_url(),
                    },
                )["access_token"]
                model = hub_call("/user", token=token)
            except (urllib.error.URLError, KeyError, ValueError) as error:
                raise HTTPException(502, f"the hub did not confirm the login ({error}): try again") from None
            self.hub_logins.remember(token, model)
            jwt = self.generate_jwt(airflow_user(model, token))
            # checked again: the cookie comes back from the browser, which a page could have set
            next_url = remembered.get("next")
            if not next_url or not is_safe_url(next_url, request):
                next_url = conf.get("api", "base_url", fallback="/")
            response = RedirectResponse(next_url)
            secure = setting("hub_url").startswith("https://")
            response.set_cookie(
                COOKIE_NAME_JWT_TOKEN,
                jwt,
                path=get_cookie_path(),
                secure=secure,
                httponly=True,
                samesite="lax",
            )
            response.delete_cookie(STATE_COOKIE, path=get_cookie_path())
            return response

        @app.get("/login", include_in_schema=False)
        def login(request: Request) -> RedirectResponse:
            """The simple auth manager's login page: people log in at the hub instead."""
            return RedirectResponse(self.get_url_login(next_url=request.query_params.get("next")))

        return app
