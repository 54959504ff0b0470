"""Incoming files the startup hook does not fast-forward by itself, because something in the
user's server would run them without being asked: the editor and the shell (workspace
settings, tasks, direnv), and Python as it starts. A teammate's commit may change the code
the pipeline runs, which runs in a user's server when that user runs it; it must not run
anything there by itself (docs/startup-hook.md, cases 16 and 17).

Standard library only, like the rest of the hook; `paths` are repository-relative with `/`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Reason:
    """Why some incoming files wait: ``state`` names the outcome when it is the first found."""

    state: str
    what: str
    why: str


EDITOR = Reason(
    "review_editor_config",
    "files your editor or shell act on by themselves",
    "workspace settings can set a terminal's environment or a program to run",
)
PYTHON_START = Reason(
    "review_python_startup",
    "files Python runs by itself when it starts",
    "a Python with them on its path or in a site folder runs them as it starts, and the clone's "
    "src/ is first on the path of every `python`, `pytest`, `mlflow` and notebook kernel you (or "
    "VS Code, or a restored notebook) start: they would run as you, with your home and tokens",
)

# Files VS Code, the terminal or direnv act on without being asked: workspace settings can
# set `terminal.integrated.env.linux`, terminal profiles or an interpreter path, and tasks
# can run on folder open (our code-server trusts the folder: startup/vscode.py).
EDITOR_FOLDERS = (".vscode/", ".devcontainer/")
EDITOR_FILES = (".envrc", ".env")
EDITOR_SUFFIXES = (".code-workspace",)

# The clone's folders the user's `python` puts on PYTHONPATH (mlops_ide/workspace/user_tools.py:
# `$MLOPS_IDE_WORKSPACE/src`; a test keeps the two equal). PYTHONPATH comes before the
# standard library and site-packages, so a module there replaces one of the same name in
# every interpreter that starts, before any of the user's code.
PATH_FOLDERS = ("src",)
# site imports these by name from anywhere on the path at every start.
SITE_HOOKS = ("sitecustomize", "usercustomize")
# What `import name` finds besides a folder (package): source, sourceless and extension files.
MODULE_SUFFIXES = (".py", ".pyc", ".so")
# Private-looking names no start imports from the path ("": not importable at all).
NEVER_IMPORTED = ("", "__init__", "__main__", "__pycache__")


def held_back(paths: list[str]) -> list[tuple[Reason, list[str]]]:
    """Each reason that holds some of ``paths`` back, with those paths; empty: none does."""
    found = [(EDITOR, editor_files(paths)), (PYTHON_START, python_start_files(paths))]
    return [(reason, files) for reason, files in found if files]


def editor_files(paths: list[str]) -> list[str]:
    """Those of `paths` that make the editor or shell run something by themselves. A folder's
    own name counts too: `.vscode` as a link to another folder (or a submodule) would bring
    that folder's files in without naming them."""
    folders = tuple(folder.rstrip("/") for folder in EDITOR_FOLDERS)
    return sorted(
        path
        for path in paths
        if path.startswith(EDITOR_FOLDERS)
        or path in folders
        or path in EDITOR_FILES
        or path.endswith(EDITOR_SUFFIXES)
    )


def python_start_files(paths: list[str]) -> list[str]:
    """Those of `paths` Python may run as it starts, before any code the user chose to run:
    a `sitecustomize`/`usercustomize` module or package anywhere (a link or a venv can put
    any folder on the path), a `.pth` file anywhere (site runs its `import` lines when its
    folder is a site folder), and in a PATH_FOLDERS folder a module that would replace a
    standard one (`encodings` is imported before anything else) or a private one that
    site-packages' own `.pth` files import (`_distutils_hack`, `_virtualenv`); also a
    PATH_FOLDERS folder itself turned into a link or a submodule."""
    return sorted(path for path in paths if starts_with_python(path))


def starts_with_python(path: str) -> bool:
    parts = path.split("/")
    if path.endswith(".pth"):
        return True
    if any(module_name(part, last=i == len(parts) - 1) in SITE_HOOKS for i, part in enumerate(parts)):
        return True
    if parts[0] not in PATH_FOLDERS:
        return False
    if len(parts) == 1:
        return True
    name = module_name(parts[1], last=len(parts) == 2)
    return name not in NEVER_IMPORTED and (name in sys.stdlib_module_names or name.startswith("_"))


def module_name(entry: str, last: bool) -> str:
    """The name `import` would know `entry` by, or "" when it cannot import it: a folder (or a
    last part without a suffix, which may be a link to one) by its own name; a file only with
    a module suffix (`json.py`, `json.cpython-313-x86_64-linux-gnu.so`)."""
    if "." not in entry:
        return entry
    if last and entry.endswith(MODULE_SUFFIXES):
        return entry.split(".", 1)[0]
    return ""
