"""JupyterHub for mlops-ide: `jupyterhub -f jupyterhub_config.py`.

The settings come from the environment (MLOPS_IDE_*, the tables in README.md and
docs/kubernetes.md), read and checked in one place; MLOPS_IDE_MODE picks the module that
sets the hub's configuration:

    local (default)   src/mlops_ide/hub/modes/local.py        everything on this machine
    kubernetes        src/mlops_ide/hub/modes/kubernetes.py   KubeSpawner pods, GitHub login

This file only sets configuration (`make up` prepares the state folder before it starts
the hub). Your own settings go in MLOPS_IDE_HUB_CONFIG_DIR/*.py (jupyterhub_config.d/ by
default), read last, in name order, with `c` and `settings` at hand: see
jupyterhub_config.d/README.md.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from mlops_ide.hub.modes import MODES, load  # noqa: E402
from mlops_ide.machine.state.layout import StateError  # noqa: E402
from mlops_ide.settings import SettingsError  # noqa: E402

c = get_config()  # noqa: F821 - provided by JupyterHub when it reads this file

try:
    settings = load()
    MODES[settings.mode].configure(c, settings)
except (SettingsError, StateError) as problem:
    sys.exit(f"mlops-ide: cannot start the hub:\n{problem}")

# -- the operator's own configuration, last, so that it can change anything above -------------
for extra in sorted(settings.hub_config_dir.glob("[!.]*.py")):
    exec(compile(extra.read_text(), str(extra), "exec"), {"c": c, "settings": settings})  # nosec B102
