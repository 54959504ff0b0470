"""Every MLOPS_IDE_* setting, read and validated in one place.

A wrong or missing value raises SettingsError with one line per problem, each naming the
variable and what to set, so the hub (and `make up`) stop before anything starts.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

CHECKOUT = Path(__file__).resolve().parents[2]
SERVICES = ("airflow", "mlflow", "serving", "app")  # run beside the hub in local mode
MODES = ("local", "kubernetes")
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# An image reference with a tag or a digest: registry[:port]/path:tag or ...@sha256:<hex>.
IMAGE = re.compile(
    r"^[a-z0-9][a-z0-9._/:-]*?(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})|@sha256:[0-9a-f]{64})$"
)
# A Kubernetes quantity for storage: 10Gi, 500Mi, 1Ti ...
STORAGE = re.compile(r"^[1-9][0-9]*(Mi|Gi|Ti)$")
# GitHub: an organization, or organization:team (team slug), as oauthenticator takes them.
GITHUB_ORG = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?::[A-Za-z0-9_.-]{1,100})?$")


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
    kubernetes: KubernetesSettings | None = None  # set in kubernetes mode only

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


@dataclass(frozen=True)
class KubernetesSettings:
    """What the hub needs to run on Kubernetes: KubeSpawner, GitHub login, culling."""

    singleuser_image: str
    hub_port: int
    hub_connect_url: str  # how user pods reach the hub's API (the hub's Service)
    proxy_api_url: str  # configurable-http-proxy's API (its own Deployment)
    db_url: str  # default: SQLite in MLOPS_IDE_HOME (the hub's volume)
    github_url: str  # https://github.com, or a GitHub Enterprise Server
    github_client_id: str
    github_client_secret: str
    github_callback_url: str
    allowed_organizations: tuple[str, ...]  # "org" or "org:team"
    allowed_users: tuple[str, ...]
    storage_class: str | None  # None: the cluster's default StorageClass
    storage_size: str
    mlflow_url: str
    idle_timeout: int  # seconds; 0 turns culling off
    # GitHub push webhook -> Airflow re-parses now (None: Airflow's bundle refresh only)
    webhook_secret: str | None = None
    webhook_port: int = 8090
    airflow_url: str = "http://airflow-api-server:8080"
    airflow_username: str = "admin"
    airflow_password: str | None = None


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from the environment; raise SettingsError listing every problem."""
    env = os.environ if environ is None else environ
    problems: list[str] = []

    def get(name: str, default: str) -> str:
        return env.get(name, "").strip() or default

    def port(name: str, default: int) -> int:
        return read_port(env, name, default, problems)

    mode = get("MLOPS_IDE_MODE", "local").lower()
    if mode not in MODES:
        problems.append(f"MLOPS_IDE_MODE={mode!r} is not a mode: set 'local' or 'kubernetes'.")

    home = Path(get("MLOPS_IDE_HOME", str(CHECKOUT / ".mlops-ide"))).expanduser()
    if not home.is_absolute():
        home = (Path.cwd() / home).resolve()
    if home.exists() and not home.is_dir():
        problems.append(
            f"MLOPS_IDE_HOME={str(home)!r} is a file: set it to a folder (it is created if missing)."
        )

    ip = get("MLOPS_IDE_IP", "0.0.0.0" if mode == "kubernetes" else "127.0.0.1")
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

    # On Kubernetes names are GitHub logins: no default admin (a stranger could own "admin").
    default_admins = "admin" if mode == "local" else ""
    admins = tuple(
        name.strip().lower()
        for name in get("MLOPS_IDE_ADMIN_USERS", default_admins).split(",")
        if name.strip()
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

    kubernetes = load_kubernetes(env, problems, repo_url, home) if mode == "kubernetes" else None

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
        kubernetes=kubernetes,
    )


def load_kubernetes(
    env: Mapping[str, str], problems: list[str], repo_url: str | None, home: Path
) -> KubernetesSettings:
    """The kubernetes-mode settings; every problem is appended to `problems`."""

    def get(name: str, default: str = "") -> str:
        return env.get(name, "").strip() or default

    def required(name: str, what: str) -> str:
        value = get(name)
        if not value:
            problems.append(f"{name} is not set: set it to {what} (required in kubernetes mode).")
        return value

    def names(name: str) -> tuple[str, ...]:
        return tuple(item.strip() for item in get(name).split(",") if item.strip())

    def url(name: str, default: str, what: str) -> str:
        value = get(name, default).rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            problems.append(f"{name}={value!r} is not an http(s) URL: set it to {what}.")
        return value

    # Local-mode settings that would contradict GitHub login and per-user tokens.
    if env.get("MLOPS_IDE_PASSWORD"):
        problems.append("MLOPS_IDE_PASSWORD is set, but kubernetes mode logs users in with GitHub: unset it.")
    for name in ("MLOPS_IDE_GIT_TOKEN", "MLOPS_IDE_GIT_TOKEN_FILE"):
        if env.get(name, "").strip():
            problems.append(
                f"{name} is set, but in kubernetes mode each user clones and pushes with their own "
                "GitHub token: unset it (one shared token would push as one person for everyone)."
            )

    if repo_url is None:
        problems.append(
            "MLOPS_IDE_REPO_URL is not set: set it to the team's pipeline repository, e.g. "
            "https://github.com/your-org/pipelines.git (required in kubernetes mode)."
        )

    # Images as .github/workflows/images.yml names them: <prefix>-<name>:<tag>.
    prefix, tag = get("MLOPS_IDE_IMAGE_PREFIX"), get("MLOPS_IDE_IMAGE_TAG")
    image = get("MLOPS_IDE_SINGLEUSER_IMAGE", f"{prefix}-singleuser:{tag}" if prefix and tag else "")
    if not image:
        problems.append(
            "MLOPS_IDE_SINGLEUSER_IMAGE is not set: set MLOPS_IDE_IMAGE_PREFIX and MLOPS_IDE_IMAGE_TAG "
            "(e.g. ghcr.io/your-org/mlops-ide and sha-<commit>), or the full image name "
            "(required in kubernetes mode)."
        )
    match = IMAGE.match(image) if image else None
    if image and (match is None or match.group("tag") == "latest"):
        problems.append(
            f"MLOPS_IDE_SINGLEUSER_IMAGE={image!r} has no fixed tag: name a version or commit tag "
            "(or an @sha256 digest), never :latest, so every user gets the same image."
        )

    hub_port = read_port(env, "MLOPS_IDE_HUB_PORT", 8081, problems)

    client_id = required("MLOPS_IDE_GITHUB_CLIENT_ID", "the client id of the team's GitHub OAuth app")
    client_secret = required(
        "MLOPS_IDE_GITHUB_CLIENT_SECRET", "the client secret of that OAuth app (from a Kubernetes Secret)"
    )
    host = get("MLOPS_IDE_HUB_HOST")  # the public host name (in deploy/: the Ingress)
    if host and not re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", host):
        problems.append(f"MLOPS_IDE_HUB_HOST={host!r} is not a host name: set one such as hub.example.org.")
    callback = get("MLOPS_IDE_GITHUB_CALLBACK_URL", f"https://{host}/hub/oauth_callback" if host else "")
    if not callback:
        problems.append(
            "MLOPS_IDE_HUB_HOST is not set: set it to the hub's public host name, e.g. hub.example.org "
            "(or set MLOPS_IDE_GITHUB_CALLBACK_URL to https://<host>/hub/oauth_callback)."
        )
    if callback and not (
        urlsplit(callback).scheme in ("http", "https") and callback.endswith("/hub/oauth_callback")
    ):
        problems.append(
            f"MLOPS_IDE_GITHUB_CALLBACK_URL={callback!r} is not the hub's callback: set "
            "https://<your hub's host>/hub/oauth_callback (and the same in the GitHub OAuth app)."
        )

    organizations = names("MLOPS_IDE_GITHUB_ALLOWED_ORGS")
    bad = [org for org in organizations if not GITHUB_ORG.match(org)]
    if bad:
        problems.append(
            f"MLOPS_IDE_GITHUB_ALLOWED_ORGS has entries that are not 'org' or 'org:team' ({', '.join(bad)}): "
            "list GitHub organizations or organization:team-slug, separated by commas."
        )
    users = tuple(name.lower() for name in names("MLOPS_IDE_GITHUB_ALLOWED_USERS"))
    bad = [name for name in users if not USERNAME.match(name)]
    if bad:
        problems.append(
            f"MLOPS_IDE_GITHUB_ALLOWED_USERS has names that are not GitHub logins ({', '.join(bad)}): "
            "list logins separated by commas."
        )
    if not organizations and not users:
        problems.append(
            "Nobody may log in: set MLOPS_IDE_GITHUB_ALLOWED_ORGS (organizations or org:team) "
            "and/or MLOPS_IDE_GITHUB_ALLOWED_USERS (GitHub logins)."
        )

    crypt_key = env.get("JUPYTERHUB_CRYPT_KEY", "").strip()
    if not crypt_key:
        problems.append(
            "JUPYTERHUB_CRYPT_KEY is not set: the users' GitHub tokens are kept encrypted with it; "
            "set it to the output of `openssl rand -hex 32` (from a Kubernetes Secret)."
        )
    elif not all(is_crypt_key(key) for key in crypt_key.split(";") if key):
        problems.append(
            "JUPYTERHUB_CRYPT_KEY is not a 32-byte key: set it to the output of `openssl rand -hex 32`."
        )
    if not env.get("CONFIGPROXY_AUTH_TOKEN", "").strip():
        problems.append(
            "CONFIGPROXY_AUTH_TOKEN is not set: the hub and configurable-http-proxy share it; "
            "set both from the same Kubernetes Secret (`openssl rand -hex 32`)."
        )

    storage_size = get("MLOPS_IDE_STORAGE_SIZE", "10Gi")
    if not STORAGE.match(storage_size):
        problems.append(
            f"MLOPS_IDE_STORAGE_SIZE={storage_size!r} is not a size: set one such as 10Gi or 500Mi."
        )

    idle_raw = get("MLOPS_IDE_IDLE_TIMEOUT", "3600")
    if not idle_raw.isdigit() or (0 < int(idle_raw) < 300):
        problems.append(
            f"MLOPS_IDE_IDLE_TIMEOUT={idle_raw!r} is not a timeout: set seconds, 300 or more "
            "(or 0 to never stop idle servers)."
        )

    webhook_secret = env.get("MLOPS_IDE_GITHUB_WEBHOOK_SECRET", "").strip() or None
    airflow_password = env.get("MLOPS_IDE_AIRFLOW_PASSWORD", "").strip() or None
    if webhook_secret and len(webhook_secret) < 16:
        problems.append(
            "MLOPS_IDE_GITHUB_WEBHOOK_SECRET is shorter than 16 characters: set a longer one "
            "(`openssl rand -hex 20`), the same in the repository's GitHub webhook."
        )
    if webhook_secret and not airflow_password:
        problems.append(
            "MLOPS_IDE_GITHUB_WEBHOOK_SECRET is set but MLOPS_IDE_AIRFLOW_PASSWORD is not: the webhook "
            "logs in to Airflow's API to ask for a re-parse; set the password of MLOPS_IDE_AIRFLOW_USERNAME "
            "(default admin), or unset the secret to rely on the bundle's refresh."
        )
    webhook_port = read_port(env, "MLOPS_IDE_WEBHOOK_PORT", 8090, problems)

    return KubernetesSettings(
        singleuser_image=image,
        hub_port=hub_port,
        hub_connect_url=url(
            "MLOPS_IDE_HUB_CONNECT_URL",
            f"http://hub:{hub_port}",
            "how user pods reach the hub, e.g. http://hub:8081",
        ),
        proxy_api_url=url(
            "MLOPS_IDE_PROXY_API_URL",
            "http://proxy-api:8001",
            "configurable-http-proxy's API, e.g. http://proxy-api:8001",
        ),
        db_url=get("MLOPS_IDE_HUB_DB_URL", f"sqlite:///{home / 'jupyterhub.sqlite'}"),
        github_url=url(
            "MLOPS_IDE_GITHUB_URL",
            "https://github.com",
            "https://github.com or your GitHub Enterprise Server",
        ),
        github_client_id=client_id,
        github_client_secret=client_secret,
        github_callback_url=callback,
        allowed_organizations=organizations,
        allowed_users=users,
        storage_class=get("MLOPS_IDE_STORAGE_CLASS") or None,
        storage_size=storage_size,
        mlflow_url=url(
            "MLOPS_IDE_MLFLOW_URL",
            "http://mlflow:5000",
            "the MLflow tracking server, e.g. http://mlflow:5000",
        ),
        idle_timeout=int(idle_raw) if idle_raw.isdigit() else 3600,
        webhook_secret=webhook_secret,
        webhook_port=webhook_port,
        airflow_url=url("MLOPS_IDE_AIRFLOW_URL", "http://airflow-api-server:8080", "Airflow's API server"),
        airflow_username=get("MLOPS_IDE_AIRFLOW_USERNAME", "admin"),
        airflow_password=airflow_password,
    )


def read_port(env: Mapping[str, str], name: str, default: int, problems: list[str]) -> int:
    """The port in `name` (default when unset); a problem is appended when it is not one."""
    raw = env.get(name, "").strip() or str(default)
    if raw.isdigit() and 1 <= int(raw) <= 65535:
        return int(raw)
    problems.append(f"{name}={raw!r} is not a port: set a whole number from 1 to 65535.")
    return default


def is_crypt_key(key: str) -> bool:
    """JupyterHub takes 32-byte keys, hex or base64 (`openssl rand -hex 32`)."""
    try:
        raw = (
            bytes.fromhex(key)
            if re.fullmatch(r"[0-9a-fA-F]{64}", key)
            else base64.b64decode(key, validate=True)
        )
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 32


def is_branch_name(name: str) -> bool:
    result = subprocess.run(["git", "check-ref-format", "--branch", name], capture_output=True)
    return result.returncode == 0 and not name.startswith("-")
