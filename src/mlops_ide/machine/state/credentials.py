"""The state folder's secrets: made once by the supervisor (mode 0600, or 0640 for a
component's account to read), only read by the hub."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from mlops_ide.machine.state.layout import StateError
from mlops_ide.settings import Settings


def ensure_secret(path: Path, make: callable, group: int | None = None) -> tuple[str, bool]:
    """The secret stored at ``path`` (mode 0600; 0640 and of `group` when given: a component's
    account reads it, never writes it), made once; returns (value, made_now)."""
    mode = 0o600 if group is None else 0o640
    if path.exists():
        if group is not None:
            os.chown(path, -1, group)
        path.chmod(mode)
        return path.read_text().strip(), False
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        if group is not None:
            os.fchown(out.fileno(), -1, group)
        os.fchmod(out.fileno(), mode)
        out.write(value + "\n")
    return value, True


def ensure_password(settings: Settings) -> tuple[str, bool]:
    """MLOPS_IDE_PASSWORD, or one generated once and kept in the state folder."""
    if settings.password:
        return settings.password, False
    return ensure_secret(settings.home / "password", lambda: secrets.token_urlsafe(12))


def read_password(settings: Settings) -> str:
    """The password `ensure_password` set up; the hub reads it, it never makes one."""
    if settings.password:
        return settings.password
    try:
        return (settings.home / "password").read_text().strip()
    except FileNotFoundError:
        raise StateError(
            f"{settings.home / 'password'} is missing: start the platform with `make up` "
            "(python -m mlops_ide.supervisor.up), which prepares the state folder, or set MLOPS_IDE_PASSWORD."
        ) from None


def read_secret(path: Path) -> str:
    """A secret `make up` made (ensure_secret); the hub reads it, it never makes one."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise StateError(
            f"{path} is missing: start the platform with `make up` (python -m mlops_ide.supervisor.up), "
            "which prepares the state folder."
        ) from None


def operator_git_token(settings) -> str:
    """The operator's token for a team's repository (MLOPS_IDE_GIT_TOKEN, or the file
    MLOPS_IDE_GIT_TOKEN_FILE names); empty without one."""
    if settings.git_token:
        return settings.git_token
    if settings.git_token_file:
        return Path(settings.git_token_file).read_text().strip()
    return ""
