"""Every MLOPS_IDE_* setting, read and validated in one place.

A wrong or missing value raises SettingsError with one line per problem, each naming the
variable and what to set, so the hub (and `make up`) stop before anything starts.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
SERVICES = ("airflow", "mlflow", "serving", "app")  # run beside the hub in local mode
MODES = ("local",)  # "kubernetes" arrives with KubeSpawner and GitHub login
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class SettingsError(ValueError):
    """One or more settings are wrong; the message says which and what to do."""


@dataclass(frozen=True)
class Settings:
    mode: str
    home: Path
    ip: str
    port: int
    password: str | None
    admin_users: tuple[str, ...]
    repo_url: str | None  # None: the local bare remote in `home`
    repo_branch: str
    airflow_port: int
    mlflow_port: int
    serving_port: int
    app_port: int
    git_credentials: Mapping[str, str]  # MLOPS_IDE_GIT_* passed on to user servers
    services: tuple[str, ...] = SERVICES

    @property
    def hub_port(self) -> int:
        """The hub's own API port (the proxy forwards to it): the public port + 1."""
        return self.port + 1

    @property
    def proxy_api_port(self) -> int:
        """configurable-http-proxy's REST API port: the public port + 2."""
        return self.port + 2

    @property
    def public_url(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"http://{host}:{self.port}/"

    @property
    def local_remote(self) -> Path:
        return self.home / "remote" / "pipelines.git"

    @property
    def effective_repo_url(self) -> str:
        return self.repo_url or str(self.local_remote)

    @property
    def dataset(self) -> Path:
        """The skin-lesion dataset the workflow trains on (seeded with synthetic images)."""
        return self.home / "data" / "skin-lesions"

    @property
    def homes(self) -> Path:
        return self.home / "homes"


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from the environment; raise SettingsError listing every problem."""
    env = os.environ if environ is None else environ
    problems: list[str] = []

    def get(name: str, default: str) -> str:
        return env.get(name, "").strip() or default

    def port(name: str, default: int) -> int:
        raw = get(name, str(default))
        if raw.isdigit() and 1 <= int(raw) <= 65535:
            return int(raw)
        problems.append(f"{name}={raw!r} is not a port: set a whole number from 1 to 65535.")
        return default

    mode = get("MLOPS_IDE_MODE", "local").lower()
    if mode not in MODES:
        problems.append(f"MLOPS_IDE_MODE={mode!r} is not a mode this release runs: set 'local'.")

    home = Path(get("MLOPS_IDE_HOME", str(CHECKOUT / ".mlops-ide"))).expanduser()
    if not home.is_absolute():
        home = (Path.cwd() / home).resolve()
    if home.exists() and not home.is_dir():
        problems.append(
            f"MLOPS_IDE_HOME={str(home)!r} is a file: set it to a folder (it is created if missing)."
        )

    ip = get("MLOPS_IDE_IP", "127.0.0.1")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        problems.append(f"MLOPS_IDE_IP={ip!r} is not an IP address: set one such as 127.0.0.1 or 0.0.0.0.")

    public_port = port("MLOPS_IDE_PORT", 8000)
    if public_port > 65533:
        problems.append(
            f"MLOPS_IDE_PORT={public_port} leaves no room for the hub's two internal ports "
            "(port+1, port+2): set 65533 or lower."
        )

    password = env.get("MLOPS_IDE_PASSWORD") or None
    if password is not None and len(password) < 8:
        problems.append(
            "MLOPS_IDE_PASSWORD is shorter than 8 characters: set a longer one, or unset it "
            "to have one generated."
        )

    admins = tuple(
        name.strip().lower() for name in get("MLOPS_IDE_ADMIN_USERS", "admin").split(",") if name.strip()
    )
    bad = [name for name in admins if not USERNAME.match(name)]
    if bad:
        problems.append(
            f"MLOPS_IDE_ADMIN_USERS has names that are not usernames ({', '.join(bad)}): use lowercase "
            "letters, digits, '.', '_' or '-', separated by commas."
        )

    branch = get("MLOPS_IDE_REPO_BRANCH", "main")
    if not is_branch_name(branch):
        problems.append(
            f"MLOPS_IDE_REPO_BRANCH={branch!r} is not a valid git branch name: set one such as main."
        )

    repo_url = env.get("MLOPS_IDE_REPO_URL", "").strip() or None
    if repo_url and re.match(r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@", repo_url):
        problems.append(
            "MLOPS_IDE_REPO_URL contains a password or token: remove it and set "
            "MLOPS_IDE_GIT_TOKEN (or MLOPS_IDE_GIT_TOKEN_FILE) instead."
        )

    git_credentials = {
        name: env[name]
        for name in ("MLOPS_IDE_GIT_TOKEN", "MLOPS_IDE_GIT_TOKEN_FILE", "MLOPS_IDE_GIT_USERNAME")
        if env.get(name, "").strip()
    }
    token_file = git_credentials.get("MLOPS_IDE_GIT_TOKEN_FILE")
    if token_file and not Path(token_file).is_file():
        problems.append(
            f"MLOPS_IDE_GIT_TOKEN_FILE={token_file!r} is not a file: set it to the file "
            "that holds the token, or unset it."
        )

    raw_services = get("MLOPS_IDE_SERVICES", ",".join(SERVICES)).lower()
    services = (
        ()
        if raw_services == "none"
        else tuple(name.strip() for name in raw_services.split(",") if name.strip())
    )
    unknown = [name for name in services if name not in SERVICES]
    if unknown:
        problems.append(
            f"MLOPS_IDE_SERVICES has unknown services ({', '.join(unknown)}): list some of "
            f"{', '.join(SERVICES)} (comma-separated), or 'none' for the hub alone."
        )

    airflow_port = port("MLOPS_IDE_AIRFLOW_PORT", 8080)
    mlflow_port = port("MLOPS_IDE_MLFLOW_PORT", 5000)
    serving_port = port("MLOPS_IDE_SERVING_PORT", 8500)
    app_port = port("MLOPS_IDE_APP_PORT", 8501)

    if problems:
        raise SettingsError("\n".join(problems))
    return Settings(
        mode=mode,
        home=home,
        ip=ip,
        port=public_port,
        password=password,
        admin_users=admins,
        repo_url=repo_url,
        repo_branch=branch,
        airflow_port=airflow_port,
        mlflow_port=mlflow_port,
        serving_port=serving_port,
        app_port=app_port,
        git_credentials=git_credentials,
        services=services,
    )


def is_branch_name(name: str) -> bool:
    result = subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True)
    return result.returncode == 0 and not name.startswith("-")
