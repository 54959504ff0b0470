"""The platform's services in local mode, one module each: the hub, MLflow, serving, the
app, Airflow. Each module declares one `SERVICE`: its name, its settings (ports), where it
listens, its address and health check (and which of its answers means "up, but waiting
for a step of yours"), its banner line, its one-shot preparation and the processes the
supervisor runs. `make up`, the port check, the hub's home page and its
health handler loop over `REGISTRY`; nothing else names a service.

Adding a service: write `services/<name>.py` with a `SERVICE` (see mlflow.py, the
smallest), and its requirements line; the registry finds the module.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import pwd
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_ide.machine.state.tools import Tools
from mlops_ide.settings import Invalid, Setting, Settings, parsers

if TYPE_CHECKING:  # the hub reads these declarations; only `make up` runs processes
    from mlops_ide.supervisor.runner import Process


@dataclass(frozen=True)
class Port:
    """A port a service listens on, and the setting that moves it."""

    host: str
    port: int
    setting: str
    what: str


@dataclass(frozen=True)
class Platform:
    """What a service is built from: the settings, the installed tools, the login password,
    and (when the platform runs as root) the OS accounts of its services by name."""

    settings: Settings
    tools: Tools
    password: str
    accounts: Mapping[str, pwd.struct_passwd] = field(default_factory=dict)

    def account(self, name: str | None) -> pwd.struct_passwd | None:
        return self.accounts.get(name) if name else None


@dataclass(frozen=True)
class Waiting:
    """An answer of a service's health check that means "up, and waiting for a step of
    yours", not "broken" (serving before any champion model exists). The home page says
    what is missing in yellow, and links to the page where that step is taken when the
    service it is taken in runs."""

    status: int  # the HTTP (error) status of that answer
    detail: str  # and its JSON "detail" (FastAPI's HTTPException), exactly
    says: str  # what is missing and what to do, as the home page says it
    step_service: str | None = None  # the service the step is taken in, by name
    step_path: str = ""  # the step's page, under that service's page
    step_text: str = ""  # the text of the link to it


@dataclass(frozen=True)
class HealthCheck:
    """How the hub checks a service for its home page: the URL, and its waiting answer."""

    url: str
    waiting: Waiting | None = None


@dataclass(frozen=True)
class PlatformService:
    name: str  # as MLOPS_IDE_SERVICES lists it
    title: str  # as people read it: on the home page and in the banner
    order: int  # start order: a service starts once those before it are ready
    processes: Callable[[Platform], list[Process]]
    ports: Callable[[Settings], list[Port]]
    settings: tuple[Setting, ...] = ()  # its own rows of the settings table
    optional: bool = True  # False: runs whatever MLOPS_IDE_SERVICES says (the hub)
    url: Callable[[Settings], str] | None = None  # its address, None: not linked
    link: str = "/"  # the page the home page and the banner link to, under `url`
    page: Callable[[Settings], str] | None = None  # that page for browsers, if not `url` + `link`
    health: str | None = None  # the path that answers 200 when it is healthy
    waiting: Waiting | None = None  # what that path answers while it is up but waiting
    banner: str | Callable[[Settings], str] = ""  # after the address in `make up`'s banner
    prepare: Callable[[Platform], Iterable[str]] | None = None  # one-shot steps, each said first
    # what stops the start before anything is made or started, each a sentence of what to do
    problems: Callable[[Settings], list[str]] = field(default=lambda settings: [])
    client_env: Callable[[Settings], dict[str, str]] = field(default=lambda settings: {})
    # ^ what a client needs to find it: set in user servers and in Airflow's tasks


def port_setting(name: str, attr: str, what: str, default: int) -> Setting:
    """A service's port in local mode: a row of the settings table, `what` listens there."""
    return Setting(
        name, attr, f"{what}, on 127.0.0.1", default=str(default), parse=parsers.port, modes=("local",)
    )


def process(
    platform: Platform,
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
    """One process of a service as the supervisor runs it: this environment less `drop`,
    plus `env`; in the state folder, its output in logs/<log or name>.log. With `account`
    (names.PIPELINE_ACCOUNT, say) it runs as that OS account when the platform has it."""
    from mlops_ide.supervisor.runner import Process

    runs_as = platform.account(account)
    environ = account_environ(runs_as, drop)
    environ.update(env or {})
    home = platform.settings.home
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
    service account also less the platform's settings (MLOPS_IDE_*: the password, tokens),
    with that account's HOME and USER: it gets only what its service gives it."""
    dropped = set(drop)
    environ = {key: value for key, value in os.environ.items() if key not in dropped}
    if account is not None:
        environ = {key: value for key, value in environ.items() if not key.startswith("MLOPS_IDE_")}
        environ.update(HOME=account.pw_dir, USER=account.pw_name, LOGNAME=account.pw_name)
    return environ


def discover(package: str = __name__) -> tuple[PlatformService, ...]:
    """Every module of `package` that declares a SERVICE, in start order."""
    found = []
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        service = getattr(importlib.import_module(f"{package}.{module.name}"), "SERVICE", None)
        if isinstance(service, PlatformService):
            found.append(service)
    names = [service.name for service in found]
    if len(names) != len(set(names)):
        raise ValueError(f"two services of {package} have the same name: {sorted(names)}")
    return tuple(sorted(found, key=lambda service: service.order))


REGISTRY = discover()
OPTIONAL = tuple(service.name for service in REGISTRY if service.optional)


def parse_selection(raw: str) -> tuple[str, ...]:
    if raw.lower() == "none":
        return ()
    chosen = tuple(name.lower() for name in parsers.names(raw))
    unknown = [name for name in chosen if name not in OPTIONAL]
    if unknown:
        raise Invalid(
            f"has unknown services ({', '.join(unknown)}): list some of {', '.join(OPTIONAL)} "
            "(comma-separated), or 'none' for the hub alone.",
            show_value=False,
        )
    return chosen


SELECTION = Setting(
    "MLOPS_IDE_SERVICES",
    "services",
    f"what runs beside the hub: some of {', '.join(f'`{name}`' for name in OPTIONAL)}, or `none`",
    default=",".join(OPTIONAL),
    parse=parse_selection,
    modes=("local",),
)


def running(settings: Settings) -> list[PlatformService]:
    """The services this platform runs: the hub, and those MLOPS_IDE_SERVICES names."""
    return [s for s in REGISTRY if not s.optional or s.name in settings.services]


def client_env(settings: Settings) -> dict[str, str]:
    """The variables that point a client (a user's server, a pipeline task) at the services."""
    env: dict[str, str] = {}
    for service in running(settings):
        env.update(service.client_env(settings))
    return env


def linked(settings: Settings) -> list[PlatformService]:
    """The running services the hub's home page links, with their health."""
    return [s for s in running(settings) if s.url is not None and s.health is not None]


def browser_page(service: PlatformService, settings: Settings) -> str:
    """The page of a linked service that the home page opens."""
    return service.page(settings) if service.page else service.url(settings) + service.link


def links(settings: Settings) -> dict[str, tuple[str, str]]:
    """For the hub's home page: each linked service's page and health check, by title."""
    return {
        service.title: (browser_page(service, settings), service.url(settings) + service.health)
        for service in linked(settings)
    }


def health_checks(settings: Settings) -> dict[str, HealthCheck]:
    """For the hub's health handler: how to check each linked service, by title."""
    return {
        service.title: HealthCheck(service.url(settings) + service.health, service.waiting)
        for service in linked(settings)
    }


def waiting_steps(settings: Settings) -> dict[str, tuple[str, str]]:
    """For the hub's home page: the page where the step a service may wait for is taken,
    and the link's text, by title; only when the service of that page runs."""
    pages = {service.name: browser_page(service, settings) for service in linked(settings)}
    return {
        service.title: (
            pages[service.waiting.step_service] + service.waiting.step_path,
            service.waiting.step_text,
        )
        for service in linked(settings)
        if service.waiting is not None and service.waiting.step_service in pages
    }


def settings_rows() -> tuple[Setting, ...]:
    """The registry's own setting (MLOPS_IDE_SERVICES), then each service's."""
    return (SELECTION, *(row for service in REGISTRY for row in service.settings))
