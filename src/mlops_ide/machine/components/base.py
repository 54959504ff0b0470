"""What a component is (the declaration every module of this package makes) and what its
processes are built from. The hub reads declarations only (names, ports, addresses,
health, settings rows); `make up` also calls `prepare` and `processes`, which import the
supervisor's runner where they build a Process, so the hub never loads it."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_ide.machine.state.tools import Tools
from mlops_ide.settings import Setting, Settings, parsers

if TYPE_CHECKING:  # the hub reads these declarations; only `make up` runs processes
    from mlops_ide.supervisor.runner import Process


@dataclass(frozen=True)
class Port:
    """A port a component listens on, and the setting that moves it."""

    host: str
    port: int
    setting: str
    what: str


@dataclass(frozen=True)
class Inputs:
    """What a component's processes are built from: the settings, the installed tools, the
    login password, and (when the platform runs as root) the components' OS accounts by name."""

    settings: Settings
    tools: Tools
    password: str
    accounts: Mapping[str, pwd.struct_passwd] = field(default_factory=dict)

    def account(self, name: str | None) -> pwd.struct_passwd | None:
        return self.accounts.get(name) if name else None


@dataclass(frozen=True)
class Waiting:
    """An answer of a component's health check that means "up, and waiting for a step of
    yours", not "broken" (serving before any champion model exists). The home page says
    what is missing in yellow, and links to the page where that step is taken when the
    component it is taken in runs."""

    status: int  # the HTTP (error) status of that answer
    detail: str  # and its JSON "detail" (FastAPI's HTTPException), exactly
    says: str  # what is missing and what to do, as the home page says it
    step_component: str | None = None  # the component the step is taken in, by name
    step_path: str = ""  # the step's page, under that component's page
    step_text: str = ""  # the text of the link to it


@dataclass(frozen=True)
class HealthCheck:
    """How the hub checks a component for its home page: the URL, and its waiting answer."""

    url: str
    waiting: Waiting | None = None


@dataclass(frozen=True)
class Component:
    name: str  # as MLOPS_IDE_SERVICES lists it
    title: str  # as people read it: on the home page and in the banner
    order: int  # the order they are listed in; all start at once but for a Process's `after`
    processes: Callable[[Inputs], list[Process]]
    ports: Callable[[Settings], list[Port]]
    settings: tuple[Setting, ...] = ()  # its own rows of the settings table
    optional: bool = True  # False: runs whatever MLOPS_IDE_SERVICES says (the hub)
    url: Callable[[Settings], str] | None = None  # its address, None: not linked
    link: str = "/"  # the page the home page and the banner link to, under `url`
    page: Callable[[Settings], str] | None = None  # that page for browsers, if not `url` + `link`
    health: str | None = None  # the path that answers 200 when it is healthy
    waiting: Waiting | None = None  # what that path answers while it is up but waiting
    banner: str | Callable[[Settings], str] = ""  # after the address in `make up`'s banner
    prepare: Callable[[Inputs], Iterable[str]] | None = None  # one-shot steps, each said first
    # what stops the start before anything is made or started, each a sentence of what to do
    problems: Callable[[Settings], list[str]] = field(default=lambda settings: [])
    client_env: Callable[[Settings], dict[str, str]] = field(default=lambda settings: {})
    # ^ what a client needs to find it: set in user servers and in Airflow's tasks


def port_setting(name: str, attr: str, what: str, default: int) -> Setting:
    """A component's port in local mode: a row of the settings table, `what` listens there."""
    return Setting(
        name, attr, f"{what}, on 127.0.0.1", default=str(default), parse=parsers.port, modes=("local",)
    )


def process(
    inputs: Inputs,
    name: str,
    argv: list[str],
    ready_url: str | None,
    env: dict[str, str] | None = None,
    drop: tuple[str, ...] = ("PYTHONPATH",),
    log: str | None = None,
    cwd: Path | None = None,
    account: str | None = None,
    **extra: Any,
) -> Process:
    """One process of a component as the supervisor runs it: this environment less `drop`,
    plus `env`; in the state folder, its output in logs/<log or name>.log. With `account`
    (names.PIPELINE_ACCOUNT, say) it runs as that OS account when the platform has it."""
    from mlops_ide.supervisor.runner import Process

    runs_as = inputs.account(account)
    environ = account_environ(runs_as, drop)
    environ.update(env or {})
    home = inputs.settings.home
    log_name = log or name.lower().replace(" ", "-")
    return Process(
        name=name,
        argv=argv,
        env=environ,
        cwd=cwd or home,
        log=home / "logs" / f"{log_name}.log",
        ready_url=ready_url,
        account=runs_as,
        **extra,
    )


def account_environ(
    account: pwd.struct_passwd | None, drop: Iterable[str] = ("PYTHONPATH",)
) -> dict[str, str]:
    """This process's environment less `drop`, for a child. For a child that runs as a
    component's account also less the platform's settings (MLOPS_IDE_*: the password, tokens),
    with that account's HOME and USER: it gets only what its component gives it."""
    dropped = set(drop)
    environ = {key: value for key, value in os.environ.items() if key not in dropped}
    if account is not None:
        environ = {key: value for key, value in environ.items() if not key.startswith("MLOPS_IDE_")}
        environ.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
    return environ
