"""The local mode's state folder (MLOPS_IDE_HOME): secrets, the bare git remote, the
tools the single-user servers find on their PATH. Every step keeps what is already there."""

from __future__ import annotations

import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mlops_ide import pipeline_repo
from mlops_ide.settings import CHECKOUT, Settings

TOOLS_FILE = CHECKOUT / ".tools.env"
TOOLS_FILE_KEYS = {  # Tools attribute -> the line scripts/install.sh writes for it
    "python": "MLOPS_IDE_PYTHON",
    "chp": "MLOPS_IDE_CHP",
    "node24": "MLOPS_IDE_NODE24",
    "code_server": "MLOPS_IDE_CODE_SERVER",
    "airflow_python": "MLOPS_IDE_AIRFLOW_PYTHON",
    "pipeline_python": "MLOPS_IDE_PIPELINE_PYTHON",
    "app_python": "MLOPS_IDE_APP_PYTHON",
}


class StateError(RuntimeError):
    """The state folder cannot be prepared; the message says what to do."""


@dataclass(frozen=True)
class Tools:
    """Where scripts/install.sh put what the platform runs (recorded in .tools.env)."""

    python: Path
    chp: Path
    node24: Path
    code_server: Path  # code-server's entry.js, run by Node 24
    airflow_python: Path  # the Airflow + MLflow virtualenv
    pipeline_python: Path  # the skin-lesion pipeline's virtualenv (Keras, PyTorch)
    app_python: Path  # the Streamlit app's virtualenv

    @classmethod
    def load(cls, path: Path = TOOLS_FILE) -> Tools:
        if not path.exists():
            raise StateError(f"{path} is missing: run `make up` (or scripts/install.sh platform) first.")
        values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        tools = cls(**{attr: Path(values.get(key, "")) for attr, key in TOOLS_FILE_KEYS.items()})
        missing = [str(p) for p in vars(tools).values() if not p.is_file()]
        if missing:
            raise StateError(f"installed tools are missing ({', '.join(missing)}): run `make up` again.")
        return tools


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
        # read by one service account's group (see who owns them: ensure_shared_folder)
        settings.home / "airflow-auth": 0o750 if accounts else 0o700,
        settings.home / "airflow": SHARED_WITH_AIRFLOW_API if accounts else 0o700,
        push_check_socket(settings).parent: 0o750 if accounts else 0o700,
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


def ensure_secret(path: Path, make: callable, group: int | None = None) -> tuple[str, bool]:
    """The secret stored at ``path`` (mode 0600; 0640 and of `group` when given: a service
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


def hub_db_url(settings: Settings) -> str:
    return f"sqlite:///{settings.home / 'jupyterhub.sqlite'}"


def read_password(settings: Settings) -> str:
    """The password `ensure_password` set up; the hub reads it, it never makes one."""
    if settings.password:
        return settings.password
    try:
        return (settings.home / "password").read_text().strip()
    except FileNotFoundError:
        raise StateError(
            f"{settings.home / 'password'} is missing: start the platform with `make up` "
            "(python -m mlops_ide.up), which prepares the state folder, or set MLOPS_IDE_PASSWORD."
        ) from None


def read_secret(path: Path) -> str:
    """A secret `make up` made (ensure_secret); the hub reads it, it never makes one."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise StateError(
            f"{path} is missing: start the platform with `make up` (python -m mlops_ide.up), "
            "which prepares the state folder."
        ) from None


def ensure_local_remote(settings: Settings, checkout: Path = CHECKOUT) -> tuple[Path, str]:
    """The bare repository users clone and push to. Made once, seeded with the pipeline
    repository built from the checkout's committed HEAD (mlops_ide.pipeline_repo) as branch
    main; after that it belongs to its users and is kept (a remote of an earlier version,
    seeded with the whole checkout, too: README, "A fresh pipeline repository")."""
    remote = settings.local_remote
    if (remote / "HEAD").exists():
        protect_remote(remote)  # also a remote made by an earlier version
        return remote, "kept"
    try:
        seed = pipeline_repo.commit(checkout)
    except pipeline_repo.PipelineRepoError as error:
        raise StateError(f"cannot seed the local git remote: {error}") from None
    partial = remote.with_name(remote.name + ".partial")
    subprocess.run(["rm", "-rf", str(partial)], check=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    run_git(["init", "--quiet", "--bare", "--initial-branch", settings.repo_branch, str(partial)], checkout)
    protect_remote(partial)
    run_git(["push", "--quiet", str(partial), f"{seed}:refs/heads/{settings.repo_branch}"], checkout)
    os.rename(partial, remote)
    return remote, f"seeded with the pipeline repository {seed[:12]}"


# What makes the shared remote keep every commit: no rewriting or deleting a branch, every
# ref update logged (bare repositories log none by default). Pushes arrive through the git
# service (mlops_ide.git_http), as its account; what they write is readable by everyone
# (Airflow's account clones from it), whatever the writer's umask.
REMOTE_CONFIG = {
    "receive.denyNonFastForwards": "true",
    "receive.denyDeletes": "true",
    "core.logAllRefUpdates": "always",
    "core.sharedRepository": "0664",  # the writer's group writes too (root's pushes stay usable)
    "receive.maxInputSize": "256m",  # a pack beyond it is refused, with git saying why
    "receive.fsckObjects": "true",  # a malformed object is refused, not stored
    "receive.advertisePushOptions": "true",  # git push -o skip-dag-check (mlops_ide/push_hook.py)
    # No gc as a pusher: it would rewrite packed-refs, a file of the remote's own folder.
    "receive.autogc": "false",
    "gc.auto": "0",
}
WRITTEN_BY_PUSHES = ("objects", "refs", "logs")  # the rest is root's alone
REDIRECTS = ("commondir",)  # a file that would make git use another folder's hooks and config


def protect_remote(remote: Path) -> None:
    for key, value in REMOTE_CONFIG.items():
        run_git(["config", key, value], remote)


def share_remote(remote: Path, writer: pwd.struct_passwd) -> None:
    """With OS accounts: the git service's account (`writer`) owns what a push writes
    (objects, refs and their logs) and may add files to the remote's own folder, where a
    push to the branch HEAD names locks HEAD. That folder is sticky: the writer replaces no
    file of root's there (config, hooks). Users write nothing: they push through the service.

    Sharing walks the tree as root, so it runs only while the writer cannot write there yet:
    at creation, or for a remote of an earlier version (which let the users' group write it:
    their files are handed over, and a `commondir` one of them may have added is set aside);
    later starts skip it."""
    from mlops_ide import os_accounts

    info = remote.stat()
    if info.st_uid == 0 and info.st_gid == writer.pw_gid and info.st_mode & 0o7777 == 0o3775:
        return  # shared already
    for entry in remote.iterdir():
        if entry.is_symlink():
            continue  # not followed, not changed (own_tree would refuse it too)
        if entry.name in WRITTEN_BY_PUSHES:
            os_accounts.hand_over_tree(entry, writer.pw_uid, writer.pw_gid)
        elif entry.name in REDIRECTS:
            entry.rename(entry.with_name(entry.name + ".set-aside-by-mlops-ide"))
            os_accounts.give_to_root(entry.with_name(entry.name + ".set-aside-by-mlops-ide"))
        else:
            os_accounts.give_to_root(entry)
    os.chown(remote, 0, writer.pw_gid)
    remote.chmod(0o3775)


PIPELINE_FOLDERS = ("airflow", "data", "pipeline-runs")  # what the pipeline's account writes
# Airflow's database and logs: the pipeline's, and its group's (the API server's account is in it)
SHARED_WITH_AIRFLOW_API = 0o2770
# the dataset: data scientists read it (their notebooks, `mlops-ide dag test`); the pipeline writes it
READ_BY_USERS = ("data",)


def push_check_socket(settings: Settings) -> Path:
    """Where the push check listens for the remote's hooks (see push_check_listener)."""
    return settings.home / "push-check" / "socket"


def dag_sandbox_socket(settings: Settings) -> Path:
    """Where the DAG check's sandbox listens for the pre-receive hook, beside the push check."""
    return settings.home / "push-check" / "sandbox"


def dag_check_folder(settings: Settings) -> Path:
    """The sandbox account's folder: its HOME, and each check's own tmp folder inside."""
    return settings.home / "dag-check"


def push_check_listener(
    settings: Settings, accounts: dict[str, pwd.struct_passwd], path: Path | None = None
) -> socket.socket:
    """The push check's (or, with `path`, the sandbox's) listening socket, made here (root)
    and handed over: in a folder of root's that only the git service's account (its group)
    enters, so neither a user nor a DAG can put another socket there; while the push check
    restarts, hooks wait in the socket's queue."""
    from mlops_ide import os_accounts

    path = path or push_check_socket(settings)
    folder = ensure_folder(path.parent, 0o750 if accounts else 0o700)
    if accounts:
        os.chown(folder, 0, accounts[os_accounts.GIT].pw_gid)
    if path.exists() or path.is_symlink():
        path.unlink()  # left by an earlier run
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    if accounts:
        os.chown(path, 0, accounts[os_accounts.GIT].pw_gid)
    path.chmod(0o660 if accounts else 0o600)
    listener.listen(16)
    return listener


PUSH_HOOKS = ("pre-receive", "post-receive")
HOOK_MARK = "Written by mlops-ide"


def install_push_hooks(settings: Settings, tools: Tools) -> None:
    """The remote's pre-receive and post-receive hooks (mlops_ide/push_hook.py): each push
    to the tracked branch is checked (and refused from anyone MLOPS_IDE_TRACKED_BRANCH_PUSHERS
    does not name), and told what is live. Values are shell-quoted (a
    branch may be named `main$(cmd)`). A hook of someone else's is set aside, not lost."""
    hooks = settings.local_remote / "hooks"
    script = code_lib(settings) / "mlops_ide" / "push_hook.py"
    for name in PUSH_HOOKS:
        argv = [str(tools.python), str(script), name, "--socket", str(push_check_socket(settings))]
        argv += ["--check-socket", str(dag_sandbox_socket(settings))]
        argv += ["--branch", settings.repo_branch]
        if settings.tracked_branch_pushers:
            argv += ["--pushers", ",".join(settings.tracked_branch_pushers)]
        text = f"#!/bin/sh\n# {HOOK_MARK}: what a push is told.\nexec {shlex.join(argv)}\n"
        hook = hooks / name
        if hook.exists() and HOOK_MARK not in hook.read_text(errors="replace"):
            hook.rename(hook.with_name(name + ".before-mlops-ide"))
        if not hook.exists() or hook.read_text() != text:
            partial = hook.with_name(f".{name}.new")
            partial.write_text(text)
            partial.chmod(0o755)
            partial.rename(hook)


def pipeline_home(settings: Settings) -> Path:
    return settings.home / "pipeline-home"


def mlflow_folder(settings: Settings) -> Path:
    """MLflow's database and artifacts: its account's alone (everyone else goes through its
    gate, over HTTP); also its HOME."""
    return settings.home / "mlflow"


def airflow_api_home(settings: Settings) -> Path:
    return settings.home / "airflow-api-home"


def service_accounts(settings: Settings) -> dict[str, pwd.struct_passwd]:
    """As root: the OS accounts of the platform's services, by name, with the pipeline's
    folders handed over to its account and MLflow's to MLflow's (once; see
    os_accounts.ensure_home), each with this state folder's folder as its HOME."""
    from mlops_ide import os_accounts

    def with_home(account: pwd.struct_passwd, home: Path) -> pwd.struct_passwd:
        os_accounts.ensure_home(home, account.pw_uid, account.pw_gid)
        return pwd.struct_passwd((*account[:5], str(home), *account[6:]))

    pipeline = os_accounts.ensure_service_account(os_accounts.PIPELINE)
    for folder in (settings.home / name for name in PIPELINE_FOLDERS):
        os_accounts.ensure_home(folder, pipeline.pw_uid, pipeline.pw_gid)
    for name in READ_BY_USERS:
        (settings.home / name).chmod(0o755)
    (settings.home / "airflow").chmod(SHARED_WITH_AIRFLOW_API)
    mlflow = os_accounts.ensure_service_account(os_accounts.MLFLOW)
    if mlflow_folder(settings).is_dir() and mlflow_folder(settings).stat().st_uid != mlflow.pw_uid:
        # the pipeline's in earlier versions, which a DAG could fill with links: walked safely
        os_accounts.own_tree(
            mlflow_folder(settings),
            mlflow.pw_uid,
            mlflow.pw_gid,
            folders=0o700,
            executables=0o700,
            files=0o600,
        )
    made = {
        os_accounts.PIPELINE: with_home(pipeline, pipeline_home(settings)),
        os_accounts.GIT: os_accounts.ensure_service_account(os_accounts.GIT),
        os_accounts.DAG_CHECK: with_home(
            os_accounts.ensure_service_account(os_accounts.DAG_CHECK), dag_check_folder(settings)
        ),
        os_accounts.AIRFLOW_API: with_home(
            os_accounts.ensure_service_account(os_accounts.AIRFLOW_API), airflow_api_home(settings)
        ),
        os_accounts.MLFLOW: with_home(mlflow, mlflow_folder(settings)),
    }
    return made


def code_lib(settings: Settings) -> Path:
    """Where every account imports the platform's code from (PYTHONPATH): the startup hook
    (user servers), mlops_ide and skin_cancer (the services that run as their own account)."""
    return settings.home / "lib"


CODE = {"startup": "startup", "mlops_ide": "src/mlops_ide", "skin_cancer": "src/skin_cancer"}


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
    return lib


def unreachable_ancestor(path: Path) -> Path | None:
    """The first folder above `path` that other accounts cannot pass through, if any."""
    for folder in reversed(path.absolute().parents):
        if not folder.stat().st_mode & 0o001:
            return folder
    return None


def code_server_bin(settings: Settings) -> Path:
    return settings.home / "bin"


def write_code_server_shim(settings: Settings, tools: Tools) -> Path:
    """A `code-server` on the user servers' PATH that runs the npm build on Node 24
    (jupyter-vscode-proxy looks it up by name)."""
    bin_dir = ensure_folder(code_server_bin(settings), 0o755)
    shim = bin_dir / "code-server"
    text = f'#!/bin/sh\nexec "{tools.node24}" "{tools.code_server}" "$@"\n'
    if not shim.exists() or shim.read_text() != text:
        shim.write_text(text)
        shim.chmod(0o755)
    return bin_dir


def write_user_tools(settings: Settings, tools: Tools, dag_env: dict[str, str]) -> Path:
    """Beside the code-server shim, first on the user servers' PATH: `python` & co. of the
    pipeline's environment and `mlops-ide` (mlops_ide.user_tools; `dag_env`: the DAGs'
    settings for `mlops-ide dag test`); and a JupyterLab kernel on that Python."""
    from mlops_ide import user_tools

    bin_dir = user_tools.write(
        code_server_bin(settings), tools.pipeline_python, tools.airflow_python, code_lib(settings), dag_env
    )
    kernel = ensure_folder(kernels_folder(settings) / "kernels" / "python3", 0o755)
    for folder in (kernels_folder(settings), kernel.parent):
        folder.chmod(0o755)
    spec = user_tools.kernel_spec(bin_dir / "python")
    if not (kernel / "kernel.json").exists() or (kernel / "kernel.json").read_text() != spec:
        (kernel / "kernel.json").write_text(spec)
    (kernel / "kernel.json").chmod(0o644)
    return bin_dir


def kernels_folder(settings: Settings) -> Path:
    """On the user servers' JUPYTER_PATH: its kernels/python3 replaces the hub's Python kernel."""
    return settings.home / "jupyter"


def run_git(args: list[str], cwd: Path) -> None:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise StateError(f"git {args[0]} failed in {cwd}: {result.stderr.strip()}")
