"""The hub's page of the components' health, for its home page (/hub/platform/health)."""

from __future__ import annotations

import asyncio
import json

from jupyterhub.handlers import BaseHandler
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse

from mlops_ide.machine.components.base import HealthCheck, Waiting


class PlatformHealthHandler(BaseHandler):
    """GET /hub/platform/health: {"<component>": "healthy" | "waiting: <what is missing>" |
    "<what is wrong>"} for the components beside the hub. Checked by the hub, because the
    browser cannot reach them across origins; for logged-in users only."""

    def initialize(self, checks: dict[str, HealthCheck]) -> None:
        self.checks = checks  # component title -> how to check it

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
    """Whether an error answer is the component's waiting one: its status and JSON detail."""
    if response is None or response.code != waiting.status:
        return False
    try:
        return json.loads(response.body).get("detail") == waiting.detail
    except (ValueError, AttributeError):  # not JSON, or not an object
        return False
