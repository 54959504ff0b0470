"""Idle culling that understands VS Code, in both modes: jupyterhub-idle-culler stops a
server nobody used for MLOPS_IDE_IDLE_TIMEOUT seconds; users' files stay.

What "used" means is the user server's report (startup/server_activity.py: JupyterLab's
activity, and VS Code's own notion of it). The proxy's notion is left out: it counts every
websocket frame, and an open VS Code tab sends them all the time, so with it no server with
a tab open would ever be idle (the hub takes the latest of the two).
"""

from __future__ import annotations

import sys
from typing import Any

from jupyterhub.proxy import ConfigurableHTTPProxy

from mlops_ide.settings import Settings


def activity_interval(settings: Settings) -> int:
    """Seconds between a user server's activity reports to the hub (JupyterHub's default:
    300): well within the timeout, or a busy server would look idle between two reports."""
    return max(10, min(60, (settings.idle_timeout or 3600) // 4))


class ProxyWithoutActivity(ConfigurableHTTPProxy):
    """configurable-http-proxy, with its routes' last_activity dropped: the hub then skips
    it when it updates users' activity, and goes by the servers' own reports."""

    def _reformat_routespec(self, routespec: str, chp_data: dict) -> dict:
        chp_data.pop("last_activity", None)
        return super()._reformat_routespec(routespec, chp_data)


def idle_culler(settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """jupyterhub-idle-culler as a hub service, and the role it needs ([] when turned off)."""
    timeout = settings.idle_timeout
    if timeout == 0:
        return [], []
    every = max(10, min(300, timeout // 4))  # how late a cull may come: a quarter of the timeout
    service = {
        "name": "idle-culler",
        "command": [
            sys.executable,
            "-m",
            "jupyterhub_idle_culler",
            f"--timeout={timeout}",
            f"--cull-every={every}",
        ],
    }
    role = {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
    return [service], [role]
