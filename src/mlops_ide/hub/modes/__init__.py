"""The two ways to run the platform, one module each with the same two functions:

    load(environ) -> Settings        read and check that mode's settings
    configure(c, settings)           set the hub's configuration for it

`jupyterhub_config.py` and `make up` call `load()` here, which picks the module by
MLOPS_IDE_MODE.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from mlops_ide.hub.modes import kubernetes, local
from mlops_ide.settings import Invalid, Settings, SettingsError, core

MODES = {"local": local, "kubernetes": kubernetes}


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings of the mode MLOPS_IDE_MODE names; SettingsError lists every problem
    (with a wrong mode, those of local mode too)."""
    env = os.environ if environ is None else environ
    row = core.PLATFORM[0]
    raw = env.get(row.name, "").strip() or row.default
    try:
        mode, problem = row.parse(raw), None
    except Invalid as error:
        mode, problem = "local", f"{row.name}={raw!r} {error.reason}"
    try:
        settings = MODES[mode].load(env)
    except SettingsError as error:
        raise SettingsError("\n".join(filter(None, [problem, str(error)]))) from None
    if problem:
        raise SettingsError(problem)
    return settings
