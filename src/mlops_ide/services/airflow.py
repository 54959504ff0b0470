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

from mlops_ide import dag_refresh, local_state, os_accounts, pipeline_engine, services
from mlops_ide.local_state import ensure_folder, ensure_secret
from mlops_ide.services import Platform, PlatformService, Port, git, mlflow, port_setting, serving
from mlops_ide.settings import Settings
from mlops_ide.supervisor import Service, as_account

BUNDLE_NAME = "pipelines"
GIT_CONN_ID = "mlops_ide_pipelines"
ANCHOR_DAG = "platform_smoke_test"  # always valid; the push hook names it (see dags/)
AUTH_MANAGER = "mlops_ide.airflow_hub_auth.HubAuthManager"  # people log in with the hub
NAME = "airflow"  # the hub's name for it: its UI at /services/airflow/
PREFIX = f"/services/{NAME}/"
SCOPE = f"access:services!service={NAME}"
OAUTH_CLIENT_ID = f"service-{NAME}"
PLATFORM_ACCOUNT = dag_refresh.PLATFORM_ACCOUNT  # the push check logs in with a password
# Where that password login answers (the simple auth manager's /token and /token/cli): the
# push check calls it on 127.0.0.1; the hub's proxy sends these to a refusal, for through
# the public port it would be an ADMIN password prompt for everyone, with no lockout.
PASSWORD_LOGINS = (f"{PREFIX}auth/token/",)
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
    return origin(settings) + PREFIX.rstrip("/")


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
    from mlops_ide.local_state import read_secret

    return {
        "name": NAME,
        "url": origin(settings),  # the proxy keeps the path: /services/airflow/...
        "api_token": read_secret(oauth_secret_file(settings)),
        "oauth_client_id": OAUTH_CLIENT_ID,
        "oauth_redirect_uri": f"{settings.public_url.rstrip('/')}{PREFIX}auth/hub/callback",
        "oauth_no_confirm": True,  # one login: the hub's
        "display": False,  # the home page links it with its health
        # Airflow starts after the hub; JupyterHub would wait 30 s for it at every start (its
        # route is added all the same)
        "timeout": 1,
    }


def auth_folder(settings: Settings) -> Path:
    return settings.home / "airflow-auth"


def passwords_file(settings: Settings) -> Path:
    return auth_folder(settings) / "passwords.json"


def platform_password_file(settings: Settings) -> Path:
    """The platform's own Airflow password (a DAG can read it: never the hub's)."""
    return auth_folder(settings) / "platform_password"


def readable_by_pipeline(platform: Platform) -> int | None:
    """The group that reads Airflow's secrets (the pipeline account's), None without accounts."""
    account = platform.account(os_accounts.PIPELINE)
    return account.pw_gid if account else None


def ensure_auth_folder(platform: Platform) -> Path:
    """root's, read by the pipeline's account: Airflow reads its secrets, cannot change them."""
    folder = ensure_folder(auth_folder(platform.settings), 0o750)
    group = readable_by_pipeline(platform)
    if group is not None:
        os.chown(folder, 0, group)
    return folder


def write_passwords(platform: Platform) -> Path:
    """The simple auth manager's users file: every Airflow user has Airflow's password (made
    once, its own: a DAG can read it, so it must not open the hub). Written anew at each
    start; the pipeline's account owns the file (Airflow opens it for appending), not the
    folder, so it never swaps in another file for root to write."""
    settings = platform.settings
    ensure_auth_folder(platform)
    group = readable_by_pipeline(platform)
    password, _ = ensure_secret(platform_password_file(settings), lambda: secrets.token_urlsafe(12), group)
    path = passwords_file(settings)
    partial = path.with_name(".passwords.json.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        account = platform.account(os_accounts.PIPELINE)
        if account is not None:  # and its group: the API server's account opens it too
            os.fchown(out.fileno(), account.pw_uid, account.pw_gid)
            os.fchmod(out.fileno(), 0o660)
        json.dump(dict.fromkeys(users(settings), password), out)
    os.replace(partial, path)
    return path


def environment(platform: Platform) -> dict[str, str]:
    """Every Airflow process's environment: configuration, the bundle, the DAGs' settings."""
    settings, tools = platform.settings, platform.tools
    shared = platform.account(os_accounts.AIRFLOW_API) is not None
    home = ensure_folder(settings.home / "airflow", local_state.SHARED_WITH_AIRFLOW_API if shared else 0o700)
    group = readable_by_pipeline(platform)
    auth = ensure_auth_folder(platform)
    jwt_secret, _ = ensure_secret(auth / "jwt_secret", lambda: secrets.token_urlsafe(64), group)
    api_secret, _ = ensure_secret(auth / "api_secret_key", lambda: secrets.token_urlsafe(32), group)
    bundle = {
        "name": BUNDLE_NAME,
        "classpath": "airflow.providers.git.bundles.git.GitDagBundle",
        "kwargs": {
            "git_conn_id": GIT_CONN_ID,
            "tracking_ref": settings.repo_branch,
            "subdir": "dags",
            "refresh_interval": 60,  # a safety net; pushes refresh at once
        },
    }
    env = services.account_environ(platform.account(os_accounts.PIPELINE), drop=())
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
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(write_passwords(platform)),
            "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
            "AIRFLOW__API__SECRET_KEY": api_secret,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(settings.airflow_port),
            "AIRFLOW__API__WORKERS": "1",
            # gunicorn takes the port the supervisor bound (socket activation): see api_server
            "AIRFLOW__API__SERVER_TYPE": "gunicorn",
            # served under the hub: /services/airflow/ (the internal address answers too)
            "AIRFLOW__API__BASE_URL": settings.public_url.rstrip("/") + PREFIX,
            "PYTHONPATH": str(local_state.code_lib(settings)),  # the auth manager below
            "AIRFLOW__MLOPS_IDE__HUB_URL": settings.public_url,
            "AIRFLOW__MLOPS_IDE__HUB_API_URL": f"http://127.0.0.1:{settings.hub_port}/hub/api",
            "AIRFLOW__MLOPS_IDE__CLIENT_ID": OAUTH_CLIENT_ID,
            "AIRFLOW__MLOPS_IDE__CLIENT_SECRET_FILE": str(oauth_secret_file(settings)),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": url(settings) + "/execution/",
            # An edited DAG is parsed within a second of its push, but by default its new
            # serialization is written at most every 30 s: a push would look ignored that long.
            "AIRFLOW__CORE__MIN_SERIALIZED_DAG_UPDATE_INTERVAL": "0",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([bundle]),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(home / "dag_bundles"),
            f"AIRFLOW_CONN_{GIT_CONN_ID.upper()}": json.dumps(git_connection(settings)),
            "MLOPS_IDE_WORK_ROOT": str(settings.home / "pipeline-runs"),
            **dag_settings(platform),
        }
    )
    if pipeline_engine.chosen(settings):  # the DAGs' steps in containers (Airflow only: never a user's)
        env.update(
            {
                "MLOPS_IDE_PIPELINE_RUNNER": "docker",
                "MLOPS_IDE_PIPELINE_IMAGE": pipeline_engine.image(settings),
                "DOCKER_HOST": pipeline_engine.docker_host(settings),
            }
        )
    if mlflow.NAME in settings.services:  # as the pipeline: the one identity that may register models
        env.update(mlflow.pipeline_env(platform))
    return env


def git_connection(settings: Settings) -> dict[str, str]:
    """The bundle's git connection; for a team's repository (MLOPS_IDE_REPO_URL) with the
    operator's token (MLOPS_IDE_GIT_TOKEN or _FILE), which Airflow's git hook hands to git
    through a credential helper. The token stays with the platform: no user server gets it
    (people clone with their own credentials), but a DAG's task, in Airflow's environment,
    can read it: give it read access to the repository alone."""
    connection = {"conn_type": "git", "host": settings.effective_repo_url}
    if settings.repo_url is None:  # the local remote: a folder, no token
        return connection
    token = settings.git_token or ""
    if not token and settings.git_token_file:
        token = Path(settings.git_token_file).read_text().strip()
    if token:
        connection.update(login=settings.git_username or "x-access-token", password=token)
    return connection


def dag_settings(platform: Platform) -> dict[str, str]:
    """What the skin-lesion DAGs read at parse time (environment only, no I/O): in Airflow,
    and in `mlops-ide dag test` in a user's server (which picks its own work folder, and
    runs steps in the pipeline's virtualenv: a user never reaches the pipeline's engine)."""
    return {
        "MLOPS_IDE_PIPELINE_RUNNER": "local",
        "MLOPS_IDE_PIPELINE_PYTHON": str(platform.tools.pipeline_python),
        "MLOPS_IDE_DATA_ROOT": str(platform.settings.dataset),
        "MLOPS_IDE_SERVING_URL": serving.url(platform.settings),
    }


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


def migrated(platform: Platform) -> dict[str, str | None]:
    return {
        "airflow": str(platform.tools.airflow_python),
        "revision": database_revision(database(platform.settings)),
    }


def database_step(platform: Platform) -> str | None:
    """What the database step is about to do, None when there is nothing to do: this Airflow
    migrated the database last and it is still at the revision that left (a migration would
    change nothing, and cost seconds at every start)."""
    if not database(platform.settings).exists():
        return "Airflow database (first start: about 20 s)"
    try:
        if json.loads(migrated_file(platform.settings).read_text()) == migrated(platform):
            return None
    except (OSError, ValueError):  # never migrated by the platform, or by an earlier version
        pass
    return "Airflow database (migrating it to this Airflow)"


def umask(platform: Platform) -> int:
    """Airflow's processes' umask: with accounts, what they write is their group's too (the
    API server's account is in the pipeline's group), nobody else's."""
    return 0o007 if platform.account(os_accounts.AIRFLOW_API) else -1


def share_database(platform: Platform) -> None:
    """The database and its WAL files (Airflow sets journal_mode=WAL; SQLite makes them 0644
    less the umask, and may leave the -shm file behind) writable by the pipeline's group, so
    the API server's account can write them. Each opened without following a link (the
    folder is the pipeline's, a DAG could plant one), changed only when it is a file of the
    pipeline's."""
    pipeline = platform.account(os_accounts.PIPELINE)
    if pipeline is None:
        return
    main = database(platform.settings)
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


def prepare(platform: Platform) -> Iterator[str]:
    """The dataset the DAGs train on, Airflow's database when it is new or another Airflow
    migrated it; each line is said before its step."""
    yield from serving.seed_dataset(platform)
    if pipeline_engine.chosen(platform.settings):
        yield from pipeline_engine.prepare(platform.settings, platform.account(os_accounts.PIPELINE))
    step = database_step(platform)
    if step is not None:
        yield step
        migrate(platform)
    share_database(platform)


def migrate(platform: Platform) -> None:
    log = platform.settings.home / "logs" / "airflow-db-migrate.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        subprocess.run(
            [str(platform.tools.airflow_python.parent / "airflow"), "db", "migrate"],
            env=environment(platform),
            cwd=platform.settings.home / "airflow",
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            umask=umask(platform),
            **as_account(platform.account(os_accounts.PIPELINE)),
        )
    record = migrated_file(platform.settings)
    partial = record.with_name(f".{record.name}.new")
    partial.write_text(json.dumps(migrated(platform)) + "\n")
    partial.replace(record)


def processes(platform: Platform) -> list[Service]:
    settings = platform.settings
    env = environment(platform)
    airflow = str(platform.tools.airflow_python.parent / "airflow")

    def process(name: str, command: str, *flags: str, **extra: object) -> Service:
        return Service(
            name=f"Airflow {name}",
            argv=[airflow, command, *flags],
            env=env,
            cwd=settings.home / "airflow",
            log=settings.home / "logs" / f"airflow-{command}.log",
            account=platform.account(os_accounts.PIPELINE),
            umask=umask(platform),
            **extra,
        )

    checks = [dag_sandbox(platform), push_check(platform)] if settings.repo_url is None else []
    engine = (  # first: Airflow's tasks start their containers through it
        [pipeline_engine.process(settings, platform.account(os_accounts.PIPELINE))]
        if pipeline_engine.chosen(settings)
        else []
    )
    return [
        *engine,
        api_server(
            platform, process("API server", "api-server", ready_url=f"{url(settings)}/api/v2/monitor/health")
        ),
        # SIGINT: the scheduler stops its LocalExecutor workers too (SIGTERM leaves them).
        # No log servers: they bind every interface whatever they are told, and on one
        # machine the API server reads the task logs from their files.
        process("scheduler", "scheduler", "--skip-serve-logs", stop_signal=signal.SIGINT),
        process("DAG processor", "dag-processor", stop_signal=signal.SIGINT),
        process("triggerer", "triggerer", "--skip-serve-logs", stop_signal=signal.SIGINT),
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


def api_server(platform: Platform, service: Service) -> Service:
    """The API server on the supervisor's socket (see SOCKET_ACTIVATION); as root, as its own
    account in the pipeline's group. A DAG runs as the pipeline's account: it can change the
    database they share, not signal the API server nor take its port."""
    listener = api_listener(platform.settings)
    service.argv = [
        str(platform.tools.airflow_python),
        "-c",
        SOCKET_ACTIVATION,
        str(listener.fileno()),
        *service.argv,
    ]
    service.sockets = (listener,)
    account, pipeline = platform.account(os_accounts.AIRFLOW_API), platform.account(os_accounts.PIPELINE)
    if account is not None and pipeline is not None:
        service.account, service.groups = account, (pipeline.pw_gid,)
        service.env = {
            **service.env,
            "HOME": account.pw_dir,
            "USER": account.pw_name,
            "LOGNAME": account.pw_name,
        }
    return service


SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


def dag_sandbox(platform: Platform) -> Service:
    """Where the pre-receive hook has the pushed DAG files imported (mlops_ide/dag_sandbox.py).
    As root: `unshare` gives it a network namespace with no interface up and a PID namespace
    of its own, `setpriv` the sandbox account (its own group alone, no new privileges); its
    environment has the DAGs' settings and nothing secret. Stopped by killing `unshare`,
    whose death kills the namespace (the server ignores signals sent from inside it).
    Without root: the platform's user, the network blocked in Python only (its log says so)."""
    settings, tools = platform.settings, platform.tools
    listener = local_state.push_check_listener(
        settings, platform.accounts, local_state.dag_sandbox_socket(settings)
    )
    folder = ensure_folder(local_state.dag_check_folder(settings))
    script = local_state.code_lib(settings) / "mlops_ide" / "dag_sandbox.py"
    argv = [str(tools.airflow_python), "-s", str(script), "--socket-fd", str(listener.fileno())]
    argv += ["--work", str(folder)]
    env = {
        "PATH": f"{tools.airflow_python.parent}:{SANDBOX_PATH}",
        "LANG": "C.UTF-8",
        "HOME": str(folder),
        "TMPDIR": str(folder),
        "PYTHONNOUSERSITE": "1",
        **dag_settings(platform),
    }
    account = platform.account(os_accounts.DAG_CHECK)
    if account is not None:
        ids = [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
        argv = [
            *("unshare", "--net", "--pid", "--kill-child", "--"),
            *("setpriv", *ids, "--no-new-privs", "--pdeathsig=SIGKILL", "--", *argv),
        ]
        env["USER"] = env["LOGNAME"] = account.pw_name
    return Service(
        name="Airflow DAG check",
        argv=argv,
        env=env,
        cwd=folder,
        log=settings.home / "logs" / "airflow-dag-check.log",
        sockets=(listener,),
        stop_signal=signal.SIGKILL if account is not None else signal.SIGTERM,
    )


def push_check(platform: Platform) -> Service:
    """What the local remote's post-receive hook asks after each push (mlops_ide/push_check.py):
    what Airflow made of it. Airflow's virtualenv and the DAGs' environment, never Airflow's
    database or keys; as the pipeline's account, which reads Airflow's password (a hook runs
    as the pusher's git, which must not). It runs no pushed code: dag_sandbox does."""
    settings = platform.settings
    listener = local_state.push_check_listener(settings, platform.accounts)
    argv = [
        str(platform.tools.airflow_python),
        str(local_state.code_lib(settings) / "mlops_ide" / "push_check.py"),
        "--socket-fd",
        str(listener.fileno()),
        "--airflow-url",
        url(settings),
        "--passwords-file",
        str(passwords_file(settings)),
        "--bundle",
        BUNDLE_NAME,
        "--dag",
        ANCHOR_DAG,
    ]
    env = {key: value for key, value in environment(platform).items() if not key.startswith("AIRFLOW")}
    return Service(
        name="Airflow push check",
        argv=argv,
        env=env,
        cwd=settings.home / "airflow",
        log=settings.home / "logs" / "airflow-push-check.log",
        account=platform.account(os_accounts.PIPELINE),
        sockets=(listener,),
    )


SERVICE = PlatformService(
    name="airflow",
    title="Airflow",
    order=40,
    settings=(PORT,),
    processes=processes,
    ports=ports,
    url=url,
    page=lambda settings: PREFIX,
    health="/api/v2/monitor/health",
    banner="(your hub login)",
    prepare=prepare,
    problems=pipeline_engine.problems,
)
