"""Where things live in local mode's state folder (MLOPS_IDE_HOME), and who may pass
through its top: the paths the supervisor makes and the hub and the components read."""

from __future__ import annotations

from pathlib import Path

from mlops_ide.settings import Settings


class StateError(RuntimeError):
    """The state folder cannot be prepared; the message says what to do."""


# Airflow's database and logs: the pipeline's, and its group's (the API server's account is in it)
SHARED_WITH_AIRFLOW_API = 0o2770


def ensure_folder(path: Path, mode: int = 0o700) -> Path:
    """The folder, made if missing, with `mode` also when it was there already."""
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    path.chmod(mode)
    return path


def lock_down(settings: Settings, accounts: bool = False) -> None:
    """At every start, also for a state folder made by an earlier version or by hand: the
    folder and everything at its top are its owner's alone (the hub database, the cookie
    secret, the password, Airflow's and MLflow's folders, the logs). With an OS account per
    user, users pass through (0711, not listable) to their homes and to the shared remote."""
    passage = 0o711 if accounts else 0o700
    ensure_folder(settings.home, passage)
    open_to_users = {
        code_server_bin(settings): 0o755,
        settings.homes: passage,
        settings.local_remote.parent: passage,
        # read by one component account's group (see who owns them: ensure_shared_folder)
        settings.home / "airflow-auth": 0o750 if accounts else 0o700,
        settings.home / "airflow": SHARED_WITH_AIRFLOW_API if accounts else 0o700,
        push_check_socket(settings).parent: 0o750 if accounts else 0o700,
        push_status_file(settings).parent: 0o755 if accounts else 0o700,  # every user reads it
    }
    for path in settings.home.iterdir():
        if path.is_symlink():
            continue
        if path.is_dir():
            path.chmod(open_to_users.get(path, 0o700))
        elif path.is_file():
            path.chmod(0o600)
    for folder in (settings.homes, settings.local_remote.parent):  # made here, not under umask 077
        ensure_folder(folder, passage)


def hub_db_url(settings: Settings) -> str:
    return f"sqlite:///{settings.home / 'jupyterhub.sqlite'}"


def accounts_token_file(settings: Settings) -> Path:
    """The token of the hub service `accounts` (root's): `make users` deletes users in a
    running hub with it, and may do nothing else."""
    return settings.home / "accounts_token"


def push_check_socket(settings: Settings) -> Path:
    """Where the push check listens for the remote's hooks (see push_check_listener)."""
    return settings.home / "push-check" / "socket"


def push_status_file(settings: Settings) -> Path:
    """Airflow's verdict on the last push to the tracked branch (mlops_ide/portable/push_status.py):
    written by the push check or the remote watch (the pipeline's account owns its folder),
    read by every user's `mlops-ide dag status`."""
    return settings.home / "push-status" / "status.json"


def previews_registry(settings: Settings) -> Path:
    """Which branch each preview slot of Airflow runs (mlops_ide/portable/previews.py): beside
    the push status, written by the pipeline's account (the push check, the remote watch),
    read by every account (MLOPS_IDE_PREVIEWS_FILE)."""
    return push_status_file(settings).parent / "previews.json"


def dag_sandbox_socket(settings: Settings) -> Path:
    """Where the DAG check's sandbox listens for the pre-receive hook, beside the push check."""
    return settings.home / "push-check" / "sandbox"


def dag_check_folder(settings: Settings) -> Path:
    """The sandbox account's folder: its HOME, and each check's own tmp folder inside."""
    return settings.home / "dag-check"


def pipeline_home(settings: Settings) -> Path:
    return settings.home / "pipeline-home"


def code_lib(settings: Settings) -> Path:
    """Where every account imports the platform's code from (PYTHONPATH): the startup hook
    (user servers), mlops_ide and skin_cancer (the components that run as their own account)."""
    return settings.home / "lib"


def unreachable_ancestor(path: Path) -> Path | None:
    """The first folder above `path` that other accounts cannot pass through, if any."""
    for folder in reversed(path.absolute().parents):
        if not folder.stat().st_mode & 0o001:
            return folder
    return None


def code_server_bin(settings: Settings) -> Path:
    return settings.home / "bin"


def kernels_folder(settings: Settings) -> Path:
    """On the user servers' JUPYTER_PATH: its kernels/python3 replaces the hub's Python kernel."""
    return settings.home / "jupyter"


def mlflow_folder(settings: Settings) -> Path:
    """MLflow's database and artifacts: its account's alone (everyone else goes through its
    gate, over HTTP); also its HOME."""
    return settings.home / "mlflow"


def airflow_api_home(settings: Settings) -> Path:
    return settings.home / "airflow-api-home"
