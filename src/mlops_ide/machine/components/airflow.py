"""Airflow 3 (API server, scheduler, DAG processor, triggerer; LocalExecutor, SQLite).

It reads its DAGs from the same git remote the users push to (a GitDagBundle, the
connection given by environment) and lets `admin` and the hub's admins in with a password
of its own. Its push check refuses pushes of DAGs that would not load, and moves it to each
pushed commit at once (the local remote's hooks ask it).

As root, the scheduler, DAG processor and triggerer run as the pipeline's account
(mlops-ide-pipeline), as do the DAGs and their tasks: a pushed DAG can reach Airflow, MLflow
(through its gate) and the pipeline's folders, not the hub's secrets nor anyone's home.
Airflow's own secrets (its password, its JWT and API keys) are in `airflow-auth/`, which
root writes and that account only reads. The API server, which the hub serves on its origin,
runs as an account of its own (mlops-ide-airflow) in the pipeline's group (for the SQLite
database and the task logs they share, group-writable: umask 007), so a DAG cannot signal
it; its port is bound by the supervisor (root) and handed over (gunicorn's socket
activation), and kept across its restarts, so nothing a DAG starts can ever listen there.
What a DAG still holds is Airflow's: its database and its signing keys (the scheduler's, whose
account the DAG's code runs as; see docs/architecture.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_ide import names
from mlops_ide.machine import os_accounts
from mlops_ide.machine.components import git, mlflow, serving
from mlops_ide.machine.components.base import Component, Inputs, Port, account_environ, port_setting
from mlops_ide.machine.os_accounts import as_account
from mlops_ide.machine.state.credentials import ensure_secret, operator_git_token
from mlops_ide.machine.state.layout import (
    SHARED_WITH_AIRFLOW_API,
    code_lib,
    dag_check_folder,
    dag_sandbox_socket,
    ensure_folder,
    previews_registry,
    push_status_file,
)
from mlops_ide.machine.state.remote import push_check_listener
from mlops_ide.portable import dag_folder, dag_refresh, previews
from mlops_ide.settings import Settings

if TYPE_CHECKING:  # the hub reads these declarations; only `make up` runs processes
    from mlops_ide.supervisor.runner import Process

BUNDLE_NAME = "pipelines"
PREVIEW_BUNDLE = "mlops_ide.in_airflow.preview_bundle.PreviewSlotBundle"
PREVIEW_REFRESH = 3  # seconds: a preview shows within seconds of its push, no restart
GIT_CONN_ID = "mlops_ide_pipelines"
AUTH_MANAGER = "mlops_ide.in_airflow.auth_manager.HubAuthManager"  # people log in with the hub
PLATFORM_ACCOUNT = dag_refresh.PLATFORM_ACCOUNT  # the push check logs in with a password
PORT = port_setting(
    "MLOPS_IDE_AIRFLOW_PORT",
    "airflow_port",
    "Airflow's API and UI (its log servers: `PORT+1`, `PORT+2`)",
    8080,
)


def origin(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.airflow_port}"


def url(settings: Settings) -> str:
    """Airflow's address on this machine, under the prefix the hub serves it at: its
    sub-applications (the login, the tasks' execution API) answer there only."""
    return origin(settings) + names.AIRFLOW_PREFIX.rstrip("/")


def ports(settings: Settings) -> list[Port]:
    return [Port("127.0.0.1", settings.airflow_port, PORT.name, "Airflow's API and UI")]


def users(settings: Settings) -> list[str]:
    """Who logs in to Airflow with a password: the platform's own account only (people log
    in through the hub)."""
    return [PLATFORM_ACCOUNT]


def oauth_secret_file(settings: Settings) -> Path:
    """The hub service `airflow`'s token, its OAuth client secret: root's, read by the pipeline."""
    return auth_folder(settings) / "hub_oauth_secret"


def hub_service(settings: Settings) -> dict:
    """Airflow as a hub service: its UI through the hub's proxy, the hub as its login."""
    from mlops_ide.machine.state.credentials import read_secret

    return {
        "name": names.AIRFLOW,
        "url": origin(settings),  # the proxy keeps the path: /services/airflow/...
        "api_token": read_secret(oauth_secret_file(settings)),
        "oauth_client_id": names.AIRFLOW_OAUTH_CLIENT_ID,
        "oauth_redirect_uri": f"{settings.public_url.rstrip('/')}{names.AIRFLOW_PREFIX}auth/hub/callback",
        "oauth_no_confirm": True,  # one login: the hub's
        "display": False,  # the home page links it with its health
        # Airflow's API server is up seconds after the hub: JupyterHub would wait for it (30 s
        # by default) at every start, when its route is added all the same. 0: one look, then
        # on (and one look at each of the hub's later health checks, which only log).
        "timeout": 0,
    }


def auth_folder(settings: Settings) -> Path:
    return settings.home / "airflow-auth"


def passwords_file(settings: Settings) -> Path:
    return auth_folder(settings) / "passwords.json"


def platform_password_file(settings: Settings) -> Path:
    """The platform's own Airflow password (a DAG can read it: never the hub's)."""
    return auth_folder(settings) / "platform_password"


def readable_by_pipeline(inputs: Inputs) -> int | None:
    """The group that reads Airflow's secrets (the pipeline account's), None without accounts."""
    account = inputs.account(names.PIPELINE_ACCOUNT)
    return account.pw_gid if account else None


def ensure_auth_folder(inputs: Inputs) -> Path:
    """root's, read by the pipeline's account: Airflow reads its secrets, cannot change them."""
    folder = ensure_folder(auth_folder(inputs.settings), 0o750)
    group = readable_by_pipeline(inputs)
    if group is not None:
        os.chown(folder, 0, group)
    return folder


def write_passwords(inputs: Inputs) -> Path:
    """The simple auth manager's users file: every Airflow user has Airflow's password (made
    once, its own: a DAG can read it, so it must not open the hub). Written anew at each
    start; the pipeline's account owns the file (Airflow opens it for appending), not the
    folder, so it never swaps in another file for root to write."""
    settings = inputs.settings
    ensure_auth_folder(inputs)
    group = readable_by_pipeline(inputs)
    password, _ = ensure_secret(platform_password_file(settings), lambda: secrets.token_urlsafe(12), group)
    path = passwords_file(settings)
    partial = path.with_name(".passwords.json.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        account = inputs.account(names.PIPELINE_ACCOUNT)
        if account is not None:  # and its group: the API server's account opens it too
            os.fchown(out.fileno(), account.pw_uid, account.pw_gid)
            os.fchmod(out.fileno(), 0o660)
        json.dump(dict.fromkeys(users(settings), password), out)
    os.replace(partial, path)
    return path


def environment(inputs: Inputs) -> dict[str, str]:
    """Every Airflow process's environment: configuration, the bundle, the DAGs' settings."""
    settings, tools = inputs.settings, inputs.tools
    shared = inputs.account(names.AIRFLOW_API_ACCOUNT) is not None
    home = ensure_folder(settings.home / "airflow", SHARED_WITH_AIRFLOW_API if shared else 0o700)
    group = readable_by_pipeline(inputs)
    auth = ensure_auth_folder(inputs)
    jwt_secret, _ = ensure_secret(auth / "jwt_secret", lambda: secrets.token_urlsafe(64), group)
    api_secret, _ = ensure_secret(auth / "api_secret_key", lambda: secrets.token_urlsafe(32), group)
    bundles = dag_bundles(settings)
    env = account_environ(inputs.account(names.PIPELINE_ACCOUNT), drop=())
    env = {key: value for key, value in env.items() if not key.startswith(("AIRFLOW", "PYTHONPATH"))}
    ensure_secret(oauth_secret_file(settings), lambda: secrets.token_hex(32), group)  # for hub_service
    if settings.repo_url is None:  # the bundle clones the local remote, whose folder is root's
        env["GIT_CONFIG_GLOBAL"] = str(git.write_trust_file(settings))
    env.update(
        {
            "PATH": f"{tools.airflow_python.parent}:{env.get('PATH', '/usr/bin:/bin')}",
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__CORE__PARALLELISM": "4",  # the default 32 starts 32 idle workers on 2 cores
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",  # pushed means meant to run
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{database(settings)}",
            "AIRFLOW__CORE__AUTH_MANAGER": AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:admin" for u in users(settings)),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(write_passwords(inputs)),
            "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
            "AIRFLOW__API__SECRET_KEY": api_secret,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(settings.airflow_port),
            "AIRFLOW__API__WORKERS": "1",
            # gunicorn takes the port the supervisor bound (socket activation): see api_server
            "AIRFLOW__API__SERVER_TYPE": "gunicorn",
            # served under the hub: /services/airflow/ (the internal address answers too)
            "AIRFLOW__API__BASE_URL": settings.public_url.rstrip("/") + names.AIRFLOW_PREFIX,
            # the auth manager below, the previews' bundle and cluster policy (airflow_local_settings)
            "PYTHONPATH": str(code_lib(settings)),
            "AIRFLOW__MLOPS_IDE__HUB_URL": settings.public_url,
            "AIRFLOW__MLOPS_IDE__HUB_API_URL": f"http://127.0.0.1:{settings.hub_port}/hub/api",
            "AIRFLOW__MLOPS_IDE__CLIENT_ID": names.AIRFLOW_OAUTH_CLIENT_ID,
            "AIRFLOW__MLOPS_IDE__CLIENT_SECRET_FILE": str(oauth_secret_file(settings)),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": url(settings) + "/execution/",
            # An edited DAG is parsed within a second of its push, but by default its new
            # serialization is written at most every 30 s: a push would look ignored that long.
            "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
            # how often the DAG processor looks for bundles due a refresh (5 s by default): a
            # preview shows within this and its slot's refresh_interval
            "AIRFLOW__DAG_PROCESSOR__BUNDLE_REFRESH_CHECK_INTERVAL": "2",
            previews.ENV: str(previews_registry(settings)),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(home / "dag_bundles"),
            f"AIRFLOW_CONN_{GIT_CONN_ID.upper()}": json.dumps(git_connection(settings)),
            "MLOPS_IDE_WORK_ROOT": str(settings.home / "pipeline-runs"),
            **dag_settings(inputs),
        }
    )
    if container_engine().chosen(settings):  # the DAGs' steps in containers (Airflow only: never a user's)
        env.update(
            {
                "MLOPS_IDE_PIPELINE_RUNNER": "docker",
                "MLOPS_IDE_PIPELINE_IMAGE": container_engine().image(settings),
                "DOCKER_HOST": container_engine().docker_host(settings),
            }
        )
    if names.MLFLOW in settings.services:  # as the pipeline: the one identity that may register models
        env.update(mlflow.pipeline_env(inputs))
        env.update(mlflow.preview_env(inputs))  # a preview's tasks' identity, rendered when they run
    return env


def dag_bundles(settings: Settings) -> list[dict]:
    """Airflow's DAG bundles: the tracked branch, and one per preview slot
    (MLOPS_IDE_PREVIEW_SLOTS), each following the branch the previews' registry names for it
    (mlops_ide/in_airflow/preview_bundle.py): Airflow reads this list once per process, so a
    new preview takes a slot configured up front instead of restarting Airflow."""
    # the DAG folder (MLOPS_IDE_DAGS_FOLDER); none: the whole repository
    subdir = {} if settings.dags_folder == dag_folder.WHOLE_REPOSITORY else {"subdir": settings.dags_folder}
    main = {
        "name": BUNDLE_NAME,
        "classpath": "airflow.providers.git.bundles.git.GitDagBundle",
        "kwargs": {
            "git_conn_id": GIT_CONN_ID,
            "tracking_ref": settings.repo_branch,
            "refresh_interval": 60,  # a safety net; pushes refresh at once
            **subdir,
        },
    }
    slots = [
        {
            "name": slot,
            "classpath": PREVIEW_BUNDLE,
            # a free slot's refresh reads the registry only; a taken one fetches (~80 ms)
            "kwargs": {"git_conn_id": GIT_CONN_ID, "refresh_interval": PREVIEW_REFRESH, **subdir},
        }
        for slot in previews.slot_names(settings.preview_slots)
    ]
    return [main, *slots]


def container_engine():
    """The pipeline's container engine (mlops_ide.supervisor.pipeline_engine), imported when asked: the
    hub reads this module's declarations and must not load the engine or the image builder."""
    from mlops_ide.supervisor import pipeline_engine

    return pipeline_engine


def git_connection(settings: Settings) -> dict[str, str]:
    """The bundle's git connection; for a team's repository (MLOPS_IDE_REPO_URL) with the
    operator's token (MLOPS_IDE_GIT_TOKEN or _FILE), which Airflow's git hook hands to git
    through a credential helper. The token stays with the inputs: no user server gets it
    (people clone with their own credentials), but a DAG's task, in Airflow's environment,
    can read it: give it read access to the repository alone."""
    connection = {"conn_type": "git", "host": settings.effective_repo_url}
    if settings.repo_url is None:  # the local remote: a folder, no token
        return connection
    token = operator_git_token(settings)
    if token:
        connection.update(login=settings.git_username or "x-access-token", password=token)
    return connection


def dag_settings(inputs: Inputs) -> dict[str, str]:
    """What the skin-lesion DAGs read at parse time (environment only, no I/O): in Airflow,
    and in `mlops-ide dag test` in a user's server (which picks its own work folder, and
    runs steps in the pipeline's virtualenv: a user never reaches the pipeline's engine)."""
    return {
        "MLOPS_IDE_PIPELINE_RUNNER": "local",
        "MLOPS_IDE_PIPELINE_PYTHON": str(inputs.tools.pipeline_python),
        "MLOPS_IDE_DATA_ROOT": str(inputs.settings.dataset),
        "MLOPS_IDE_SERVING_URL": serving.url(inputs.settings),
        **platform_variables(inputs.settings),
    }


def platform_variables(settings: Settings) -> dict[str, str]:
    """The Airflow variables the platform answers itself for a team's DAGs, through Airflow's
    own `AIRFLOW_VAR_<NAME>` convention: a DAG that reads `Variable.get("MLFLOW_TRACKING_URI")`
    at parse time loads with no set-up by hand (and in the DAG check's sandbox as in Airflow)."""
    if names.MLFLOW not in settings.services:
        return {}
    return {"AIRFLOW_VAR_MLFLOW_TRACKING_URI": mlflow.url(settings)}


def database(settings: Settings) -> Path:
    return settings.home / "airflow" / "airflow.db"


def migrated_file(settings: Settings) -> Path:
    """What the last `airflow db migrate` left: which Airflow ran it (its virtualenv, named
    by a hash of what built it) and the database's revision after it. The platform's own
    file, not in the folder the pipeline's account writes."""
    return settings.home / "airflow-migrated.json"


def database_revision(path: Path) -> str | None:
    """The database's Alembic revision, read only; None without a database or a revision."""
    if not path.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:  # no such table, a journal to roll back first, not a database
        return None
    return row[0] if row else None


def migrated(inputs: Inputs) -> dict[str, str | None]:
    return {
        "airflow": str(inputs.tools.airflow_python),
        "revision": database_revision(database(inputs.settings)),
    }


def database_step(inputs: Inputs) -> str | None:
    """What the database step is about to do, None when there is nothing to do: this Airflow
    migrated the database last and it is still at the revision that left (a migration would
    change nothing, and cost seconds at every start)."""
    if not database(inputs.settings).exists():
        return "Airflow database (first start: about 20 s)"
    try:
        if json.loads(migrated_file(inputs.settings).read_text()) == migrated(inputs):
            return None
    except (OSError, ValueError):  # never migrated by the inputs, or by an earlier version
        pass
    return "Airflow database (migrating it to this Airflow)"


def umask(inputs: Inputs) -> int:
    """Airflow's processes' umask: with accounts, what they write is their group's too (the
    API server's account is in the pipeline's group), nobody else's."""
    return 0o007 if inputs.account(names.AIRFLOW_API_ACCOUNT) else -1


def share_database(inputs: Inputs) -> None:
    """The database and its WAL files (Airflow sets journal_mode=WAL; SQLite makes them 0644
    less the umask, and may leave the -shm file behind) writable by the pipeline's group, so
    the API server's account can write them. Each opened without following a link (the
    folder is the pipeline's, a DAG could plant one), changed only when it is a file of the
    pipeline's."""
    pipeline = inputs.account(names.PIPELINE_ACCOUNT)
    if pipeline is None:
        return
    main = database(inputs.settings)
    for path in (main, main.with_name(f"{main.name}-wal"), main.with_name(f"{main.name}-shm")):
        fd = os_accounts.open_no_link(path)
        if fd is None:
            continue
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode) and info.st_uid == pipeline.pw_uid and info.st_nlink == 1:
                os.fchmod(fd, 0o660)
        finally:
            os.close(fd)


def prepare(inputs: Inputs) -> Iterator[str]:
    """The dataset the DAGs train on, Airflow's database when it is new or another Airflow
    migrated it; each line is said before its step."""
    yield from serving.seed_dataset(inputs)
    if container_engine().chosen(inputs.settings):
        yield from container_engine().prepare(inputs.settings, inputs.account(names.PIPELINE_ACCOUNT))
    step = database_step(inputs)
    if step is not None:
        yield step
        migrate(inputs)
    share_database(inputs)


def migrate(inputs: Inputs) -> None:
    log = inputs.settings.home / "logs" / "airflow-db-migrate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        subprocess.run(
            [str(inputs.tools.airflow_python.parent / "airflow"), "db", "migrate"],
            env=environment(inputs),
            cwd=inputs.settings.home / "airflow",
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            umask=umask(inputs),
            **as_account(inputs.account(names.PIPELINE_ACCOUNT)),
        )
    record = migrated_file(inputs.settings)
    partial = record.with_name(f".{record.name}.new")
    partial.write_text(json.dumps(migrated(inputs)) + "\n")
    partial.replace(record)


def processes(inputs: Inputs) -> list[Process]:
    settings = inputs.settings
    env = environment(inputs)
    airflow = str(inputs.tools.airflow_python.parent / "airflow")

    def process(name: str, command: str, *flags: str, **extra: object) -> Process:
        from mlops_ide.supervisor.runner import Process

        return Process(
            name=f"Airflow {name}",
            argv=[airflow, command, *flags],
            env=env,
            cwd=settings.home / "airflow",
            log=settings.home / "logs" / f"airflow-{command}.log",
            account=inputs.account(names.PIPELINE_ACCOUNT),
            umask=umask(inputs),
            **extra,
        )

    # the local remote's hooks ask the push check; a remote outside is watched
    local_remote = settings.repo_url is None
    checks = [dag_sandbox(inputs), push_check(inputs)] if local_remote else [remote_watch(inputs)]
    engine = (  # Airflow's tasks start their containers through it
        [container_engine().process(settings, inputs.account(names.PIPELINE_ACCOUNT))]
        if container_engine().chosen(settings)
        else []
    )
    server = api_server(
        inputs, process("API server", "api-server", ready_url=f"{url(settings)}/api/v2/monitor/health")
    )
    # What runs tasks and triggers starts after what they use: the execution API (the API
    # server), MLflow and the container engine, so that a run due at start does not fail.
    # The DAG processor and the checks need nothing at start.
    runs_tasks = (server.name, *mlflow.ready_for_clients(settings), *(part.name for part in engine))
    return [
        *engine,
        server,
        # SIGINT: the scheduler stops its LocalExecutor workers too (SIGTERM leaves them).
        # No log servers: they bind every interface whatever they are told, and on one
        # machine the API server reads the task logs from their files.
        process("scheduler", "scheduler", "--skip-serve-logs", stop_signal=signal.SIGINT, after=runs_tasks),
        process("DAG processor", "dag-processor", stop_signal=signal.SIGINT),
        process("triggerer", "triggerer", "--skip-serve-logs", stop_signal=signal.SIGINT, after=runs_tasks),
        *checks,
    ]


# gunicorn takes listening sockets by systemd's socket activation: from descriptor 3 on,
# LISTEN_FDS of them, for the process LISTEN_PID (its own pid, known only once it runs).
SOCKET_ACTIVATION = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); "
    "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid())); os.execv(sys.argv[2], sys.argv[2:])"
)


def api_listener(settings: Settings) -> socket.socket:
    """Airflow's API port, bound here (root) and kept by the supervisor across the API
    server's restarts: while the platform runs, nothing else can bind it, not even while the
    API server is down (a DAG that stopped it would otherwise serve pages on the hub's origin).
    Not yet listening: gunicorn listens when it takes it (until then the hub, which starts
    first, is refused at once instead of waiting on a port nobody answers); once listening,
    no other socket may bind the port, SO_REUSEADDR or not, and requests made while the API
    server restarts wait in its queue."""
    made = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    made.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # past TIME_WAITs of a previous run
    made.bind(("127.0.0.1", settings.airflow_port))
    return made


def api_server(inputs: Inputs, server: Process) -> Process:
    """The API server on the supervisor's socket (see SOCKET_ACTIVATION); as root, as its own
    account in the pipeline's group. A DAG runs as the pipeline's account: it can change the
    database they share, not signal the API server nor take its port."""
    listener = api_listener(inputs.settings)
    server.argv = [
        str(inputs.tools.airflow_python),
        "-c",
        SOCKET_ACTIVATION,
        str(listener.fileno()),
        *server.argv,
    ]
    server.sockets = (listener,)
    account, pipeline = inputs.account(names.AIRFLOW_API_ACCOUNT), inputs.account(names.PIPELINE_ACCOUNT)
    if account is not None and pipeline is not None:
        server.account, server.groups = account, (pipeline.pw_gid,)
        server.env = {
            **server.env,
            "HOME": account.pw_dir,
            "USER": account.pw_name,
            "LOGNAME": account.pw_name,
        }
    return server


SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def dag_sandbox(inputs: Inputs) -> Process:
    """Where the pre-receive hook has the pushed DAG files imported (mlops_ide/in_airflow/dag_sandbox.py).
    As root: `unshare` gives it a network namespace with no interface up and a PID namespace
    of its own, `setpriv` the sandbox account (its own group alone, no new privileges); its
    environment has the DAGs' settings and nothing secret. Stopped by killing `unshare`,
    whose death kills the namespace (the server ignores signals sent from inside it).
    Without root: the platform's user, the network blocked in Python only (its log says so)."""
    from mlops_ide.supervisor.runner import Process

    settings, tools = inputs.settings, inputs.tools
    listener = push_check_listener(settings, inputs.accounts, dag_sandbox_socket(settings))
    folder = ensure_folder(dag_check_folder(settings))
    # -P: the work folder (its cwd, which checked DAGs write) never goes on its sys.path
    module = ("-s", "-P", "-m", "mlops_ide.in_airflow.dag_sandbox")
    argv = [str(tools.airflow_python), *module, "--socket-fd", str(listener.fileno())]
    argv += ["--work", str(folder), "--dags-folder", inputs.settings.dags_folder]
    env = {
        "PATH": f"{tools.airflow_python.parent}:{SANDBOX_PATH}",
        "LANG": "C.UTF-8",
        "HOME": str(folder),
        "TMPDIR": str(folder),
        "PYTHONNOUSERSITE": "1",
        "PYTHONPATH": str(code_lib(settings)),  # the sandbox's code, readable by all
        **dag_settings(inputs),
    }
    account = inputs.account(names.DAG_CHECK_ACCOUNT)
    if account is not None:
        ids = [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
        argv = [
            *("unshare", "--net", "--pid", "--kill-child", "--"),
            *("setpriv", *ids, "--no-new-privs", "--pdeathsig=SIGKILL", "--", *argv),
        ]
        env["USER"] = env["LOGNAME"] = account.pw_name
    return Process(
        name="Airflow DAG check",
        argv=argv,
        env=env,
        cwd=folder,
        log=settings.home / "logs" / "airflow-dag-check.log",
        sockets=(listener,),
        stop_signal=signal.SIGKILL if account is not None else signal.SIGTERM,
    )


def push_check(inputs: Inputs) -> Process:
    """What the local remote's post-receive hook asks after each push (mlops_ide/in_airflow/push_check.py):
    what Airflow made of it. Airflow's virtualenv and the DAGs' environment, never Airflow's
    database or keys; as the pipeline's account, which reads Airflow's password (a hook runs
    as the pusher's git, which must not). It runs no pushed code: dag_sandbox does."""
    from mlops_ide.supervisor.runner import Process

    settings = inputs.settings
    listener = push_check_listener(settings, inputs.accounts)
    argv = [
        str(inputs.tools.airflow_python),
        *("-P", "-m", "mlops_ide.in_airflow.push_check"),  # from the code lib (PYTHONPATH)
        *("--socket-fd", str(listener.fileno())),
        *verdict_arguments(inputs),
        *preview_arguments(inputs),
    ]
    env = {key: value for key, value in environment(inputs).items() if not key.startswith("AIRFLOW")}
    return Process(
        name="Airflow push check",
        argv=argv,
        env=env,
        cwd=settings.home / "airflow",
        log=settings.home / "logs" / "airflow-push-check.log",
        account=inputs.account(names.PIPELINE_ACCOUNT),
        sockets=(listener,),
    )


def verdict_arguments(inputs: Inputs) -> list[str]:
    """Where the push check and the remote watch ask Airflow, and write its verdict for
    `mlops-ide dag status` (in a folder the pipeline's account writes and everyone reads)."""
    settings = inputs.settings
    status = push_status_file(settings)
    ensure_folder(status.parent, 0o755 if inputs.accounts else 0o700)
    pipeline = inputs.account(names.PIPELINE_ACCOUNT)
    if pipeline is not None:
        os.chown(status.parent, pipeline.pw_uid, pipeline.pw_gid)
    return [
        *("--airflow-url", url(settings)),
        *("--passwords-file", str(passwords_file(settings))),
        *("--bundle", BUNDLE_NAME),
        *("--dag", names.ANCHOR_DAG),
        *("--dags-folder", settings.dags_folder),
        *("--status-file", str(status)),
        *("--branch", settings.repo_branch),
    ]


def preview_arguments(inputs: Inputs, outside: bool = False) -> list[str]:
    """Where the push check and the remote watch keep the previews' registry (beside the
    status file, verdict_arguments makes its folder), its slots and limits, and Airflow's UI
    as users reach it (the links they are answered). For the watch of a remote `outside` the
    platform, no slot unless MLOPS_IDE_PREVIEWS_OUTSIDE: no hook of ours says who may push a
    preview there, and a preview runs as the pipeline."""
    settings = inputs.settings
    slots = settings.preview_slots if settings.previews_outside or not outside else 0
    return [
        *("--previews-file", str(previews_registry(settings))),
        *("--preview-slots", str(slots)),
        *("--previews-per-person", str(settings.previews_per_person)),
        *("--preview-days", str(settings.preview_days)),
        *("--ui-url", settings.public_url.rstrip("/") + names.AIRFLOW_PREFIX.rstrip("/")),
    ]


def remote_watch(inputs: Inputs) -> Process:
    """For a remote outside the platform (MLOPS_IDE_REPO_URL), which has no hooks of ours:
    polls its tracked branch (mlops_ide/in_airflow/remote_watch.py) with the bundle's own git
    connection and moves Airflow to each new commit at once, as the push check does after a
    push to the local remote. Airflow's environment (its connection is the bundle's), as the
    pipeline's account, which holds that token anyway."""
    from mlops_ide.supervisor.runner import Process

    settings = inputs.settings
    argv = [
        str(inputs.tools.airflow_python),
        *("-P", "-m", "mlops_ide.in_airflow.remote_watch"),
        *("--git-conn-id", GIT_CONN_ID),
        *("--mirror", str(settings.home / "airflow" / "remote-watch.git")),
        *("--every", "2"),
        *("--wait", "10"),
        *verdict_arguments(inputs),
        *preview_arguments(inputs, outside=True),
    ]
    return Process(
        name="Airflow remote watch",
        argv=argv,
        env={**environment(inputs), "GIT_TERMINAL_PROMPT": "0"},
        cwd=settings.home / "airflow",
        log=settings.home / "logs" / "airflow-remote-watch.log",
        account=inputs.account(names.PIPELINE_ACCOUNT),
        umask=umask(inputs),
    )


COMPONENT = Component(
    name="airflow",
    title="Airflow",
    order=40,
    settings=(PORT,),
    processes=processes,
    ports=ports,
    url=url,
    page=lambda settings: names.AIRFLOW_PREFIX,
    health="/api/v2/monitor/health",
    banner="(your hub login)",
    prepare=prepare,
    problems=lambda settings: container_engine().problems(settings),
)
