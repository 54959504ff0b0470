"""The whole settings table: the platform's rows, then each component's (machine/components/)."""

from __future__ import annotations

from mlops_ide.machine import components
from mlops_ide.settings import Setting, core


def rows() -> tuple[Setting, ...]:
    return (*core.PLATFORM, *components.settings_rows(), *core.KUBERNETES, *core.ELSEWHERE)


def select(*names: str) -> tuple[Setting, ...]:
    """Some rows by variable name, for a process that reads only those (a hub service)."""
    by_name = {row.name: row for row in rows()}
    return tuple(by_name[name] for name in names)
