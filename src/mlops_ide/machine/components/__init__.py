"""Local mode's components, one module each: the hub, the git service, MLflow, serving,
the app, Airflow. Each module declares one `COMPONENT` (machine/components/base.py): its
name, its settings (ports), where it listens, its address and health check (and which of
its answers means "up, but waiting for a step of yours"), its banner line, its one-shot
preparation and the processes the supervisor runs. `make up`, the port check, the hub's
home page and its health handler loop over `REGISTRY`; nothing else names a component.

Adding a component: write `machine/components/<name>.py` with a `COMPONENT` (see
mlflow.py, the smallest), add it to the import below, and its requirements line.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable
from types import ModuleType

from mlops_ide.machine.components import airflow, app, git, hub, mlflow, serving
from mlops_ide.machine.components.base import Component, HealthCheck
from mlops_ide.settings import Invalid, Setting, Settings, parsers


def registry(modules: Iterable[ModuleType], where: str = __name__) -> tuple[Component, ...]:
    """The COMPONENT of each module that declares one, in their order (`Component.order`)."""
    found = [
        module.COMPONENT for module in modules if isinstance(getattr(module, "COMPONENT", None), Component)
    ]
    names = [component.name for component in found]
    if len(names) != len(set(names)):
        raise ValueError(f"two components of {where} have the same name: {sorted(names)}")
    return tuple(sorted(found, key=lambda component: component.order))


def discover(package: str) -> tuple[Component, ...]:
    """Every module of another `package` that declares a COMPONENT, in their order."""
    modules = pkgutil.iter_modules(importlib.import_module(package).__path__)
    return registry((importlib.import_module(f"{package}.{module.name}") for module in modules), package)


REGISTRY = registry((hub, git, mlflow, serving, app, airflow))
OPTIONAL = tuple(component.name for component in REGISTRY if component.optional)


def parse_selection(raw: str) -> tuple[str, ...]:
    if raw.lower() == "none":
        return ()
    chosen = tuple(name.lower() for name in parsers.names(raw))
    unknown = [name for name in chosen if name not in OPTIONAL]
    if unknown:
        raise Invalid(
            f"has unknown components ({', '.join(unknown)}): list some of {', '.join(OPTIONAL)} "
            "(comma-separated), or 'none' for the hub alone.",
            show_value=False,
        )
    return chosen


SELECTION = Setting(
    "MLOPS_IDE_SERVICES",
    "services",  # the setting's name, kept: it lists components
    f"what runs beside the hub: some of {', '.join(f'`{name}`' for name in OPTIONAL)}, or `none`",
    default=",".join(OPTIONAL),
    parse=parse_selection,
    modes=("local",),
)


def running(settings: Settings) -> list[Component]:
    """The components this platform runs: the hub, and those MLOPS_IDE_SERVICES names."""
    return [s for s in REGISTRY if not s.optional or s.name in settings.services]


def client_env(settings: Settings) -> dict[str, str]:
    """The variables that point a client (a user's server, a pipeline task) at the components."""
    env: dict[str, str] = {}
    for component in running(settings):
        env.update(component.client_env(settings))
    return env


def linked(settings: Settings) -> list[Component]:
    """The running components the hub's home page links, with their health."""
    return [s for s in running(settings) if s.url is not None and s.health is not None]


def browser_page(component: Component, settings: Settings) -> str:
    """The page of a linked component that the home page opens."""
    return component.page(settings) if component.page else component.url(settings) + component.link


def links(settings: Settings) -> dict[str, tuple[str, str]]:
    """For the hub's home page: each linked component's page and health check, by title."""
    return {
        component.title: (browser_page(component, settings), component.url(settings) + component.health)
        for component in linked(settings)
    }


def health_checks(settings: Settings) -> dict[str, HealthCheck]:
    """For the hub's health handler: how to check each linked component, by title."""
    return {
        component.title: HealthCheck(component.url(settings) + component.health, component.waiting)
        for component in linked(settings)
    }


def waiting_steps(settings: Settings) -> dict[str, tuple[str, str]]:
    """For the hub's home page: the page where the step a component may wait for is taken,
    and the link's text, by title; only when the component of that page runs."""
    pages = {component.name: browser_page(component, settings) for component in linked(settings)}
    return {
        component.title: (
            pages[component.waiting.step_component] + component.waiting.step_path,
            component.waiting.step_text,
        )
        for component in linked(settings)
        if component.waiting is not None and component.waiting.step_component in pages
    }


def settings_rows() -> tuple[Setting, ...]:
    """The registry's own setting (MLOPS_IDE_SERVICES), then each component's."""
    return (SELECTION, *(row for component in REGISTRY for row in component.settings))
