"""The copy of the platform's code every account imports from (PYTHONPATH): the checkout
may lie where other accounts cannot reach."""

from __future__ import annotations

import shutil
from pathlib import Path

from mlops_ide.machine.state.layout import code_lib, ensure_folder
from mlops_ide.settings import CHECKOUT, Settings

CODE = {"startup": "startup", "mlops_ide": "src/mlops_ide", "skin_cancer": "src/skin_cancer"}
# Airflow imports its cluster policy from a top-level module of this name (on its PYTHONPATH)
MODULES = {"airflow_local_settings.py": "src/airflow_local_settings.py"}


def install_code(settings: Settings, checkout: Path = CHECKOUT) -> Path:
    """A copy of the platform's code that every account can read, made anew at each start:
    the checkout may lie where other accounts cannot reach (a root-only home)."""
    lib = ensure_folder(code_lib(settings), 0o755)
    for name, source in CODE.items():
        fresh = lib / f".{name}.new"
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.copytree(checkout / source, fresh, ignore=shutil.ignore_patterns("__pycache__"))
        for path in [fresh, *fresh.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shutil.rmtree(lib / name, ignore_errors=True)
        fresh.rename(lib / name)
    for name, source in MODULES.items():
        fresh = lib / f".{name}.new"
        shutil.copyfile(checkout / source, fresh)
        fresh.chmod(0o644)
        fresh.replace(lib / name)
    return lib
