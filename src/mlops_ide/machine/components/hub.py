"""JupyterHub itself (with its configurable-http-proxy): always runs, started with the
others (it waits for the git service it routes to itself, machine/components/git.py)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mlops_ide.machine.components.base import Component, Inputs, Port, process
from mlops_ide.settings import CHECKOUT, Settings

if TYPE_CHECKING:  # the hub reads these declarations; only `make up` runs processes
    from mlops_ide.supervisor.runner import Process

PROCESS = "JupyterHub"  # the process's name, for those that start after it


def ports(settings: Settings) -> list[Port]:
    return [
        Port(settings.ip, settings.port, "MLOPS_IDE_PORT", "the hub's address"),
        Port("127.0.0.1", settings.hub_port, "MLOPS_IDE_PORT", "MLOPS_IDE_PORT+1, the hub's internal API"),
        Port("127.0.0.1", settings.proxy_api_port, "MLOPS_IDE_PORT", "MLOPS_IDE_PORT+2, the proxy's API"),
    ]


def processes(inputs: Inputs) -> list[Process]:
    settings, python = inputs.settings, inputs.tools.python
    argv = [str(python), "-m", "jupyterhub", "-f", str(CHECKOUT / "jupyterhub_config.py")]
    env = {"PATH": f"{python.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    # Through the proxy: it answers 404 until the hub has added its own route.
    ready = f"{settings.public_url.replace('0.0.0.0', '127.0.0.1')}hub/api"
    return [process(inputs, PROCESS, argv, ready, env=env)]


COMPONENT = Component(
    name="hub", title="JupyterHub", order=0, optional=False, processes=processes, ports=ports
)
