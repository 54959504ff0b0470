"""Push to live: a user's `git push` reaches a real Airflow through the same remote, runs
pinned to its commit, and is tracked in a real MLflow. One platform for the module."""

from __future__ import annotations

import http.client
import json
import os
import pwd
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from mlops_ide.machine.state.tools import Tools
from mlops_ide.processes import descendants, is_alive
from tests.support.airflow_api import AirflowAPI
from tests.support.browser_tools import ARTIFACTS, log_in
from tests.support.gitrepos import git, user_commit
from tests.support.local_platform import PlatformConfig, RunningPlatform, answers, wait_for
from tests.support.platform_tools import github_signature, running_push_webhook
from tests.support.standins import GitHubStandIn

HELLO_DAG = """
from airflow.sdk import dag, task


@dag(dag_id="hello_push", schedule=None, tags=["test"])
def hello_push():
    @task
    def answer() -> int:
        print("the answer is 42")
        return 42

    answer()


hello_push()
"""


PLATFORM = PlatformConfig(
    "airflow",
    {"MLOPS_IDE_SERVICES": "airflow,mlflow", "MLOPS_IDE_ADMIN_USERS": "admin,ops"},
    timeout=180,
    stops_cleanly=True,
    leaves_no_process=True,  # LocalExecutor workers and uvicorn's included
)


@pytest.fixture(scope="module")
def airflow(platform: RunningPlatform) -> AirflowAPI:
    api = AirflowAPI(platform.airflow_url, platform.airflow_password)
    wait_for(lambda: api.dag("platform_smoke_test"), 120, "the seeded DAGs to be parsed")
    return api


@pytest.fixture(scope="module")
def clone(platform: RunningPlatform) -> Path:
    """Alice's clone, made by the startup hook when her server started."""
    session = platform.login("alice")
    platform.open_vscode(session, "alice")
    return platform.home / "homes" / "alice" / "pipelines"


def push(
    platform: RunningPlatform, clone: Path, files: dict[str, str | None], message: str, *options: str
) -> str:
    """Commit and push as alice, from her server's environment through the git service, so
    the whole path from her push to Airflow is hers; the pushed commit."""
    user_commit(clone, files, message)
    pushed = platform.terminal("alice", "git", "push", "--quiet", *options, "origin", "main", cwd=clone)
    assert pushed.returncode == 0, pushed.stderr
    return git(clone, "rev-parse", "HEAD")


READS_AT_PARSE_DAG = """\
from airflow.sdk import DAG, Variable

TRACKING = Variable.get("MLFLOW_TRACKING_URI")  # as many teams' DAGs do, at parse time

with DAG(dag_id="reads_at_parse", schedule=None, tags=[TRACKING.rsplit("/", 1)[-1]]):
    pass
"""


def test_a_dag_reading_the_mlflow_variable_at_parse_time_passes_the_check_and_goes_live(
    platform: RunningPlatform, airflow: AirflowAPI, clone: Path
) -> None:
    """The platform answers MLFLOW_TRACKING_URI itself (AIRFLOW_VAR_*), in the remote's check
    as in Airflow: no variable to set by hand."""
    push(platform, clone, {"dags/reads_at_parse.py": READS_AT_PARSE_DAG}, "a DAG that reads at parse")

    dag = wait_for(lambda: airflow.dag("reads_at_parse"), 30, "reads_at_parse to appear")

    assert [tag["name"] for tag in dag["tags"]] == ["mlflow"]


def test_pushed_dag_appears_runs_and_records_its_commit(
    platform: RunningPlatform, airflow: AirflowAPI, clone: Path
) -> None:
    commit = push(platform, clone, {"dags/hello_push.py": HELLO_DAG}, "add hello_push")

    wait_for(lambda: airflow.dag("hello_push"), 30, "hello_push to appear")
    run = airflow.wait_for_run("hello_push", airflow.trigger("hello_push"))

    assert run["state"] == "success"
    assert run["bundle_version"] == commit
    # The task's log reads through the API from the log files (no log server on any interface).
    task_log = airflow.get(f"dags/hello_push/dagRuns/{run['dag_run_id']}/taskInstances/answer/logs/1").text
    assert "the answer is 42" in task_log
    assert (
        f"push of {commit[:12]} by alice: live: hello_push"
        in (platform.home / "logs" / "airflow-push-check.log").read_text()
    )


ENV_PROBE_DAG = """
import os

from airflow.sdk import dag, task


@dag(dag_id="mlflow_env_probe", schedule=None, tags=["test"])
def mlflow_env_probe():
    @task
    def tracking_uri() -> str:
        has_token = bool(os.environ.get("MLFLOW_TRACKING_TOKEN"))
        return os.environ.get("MLFLOW_TRACKING_URI", "") + (" with a token" if has_token else "")

    tracking_uri()


mlflow_env_probe()
"""


def test_airflow_tasks_see_the_mlflow_tracking_uri(
    platform: RunningPlatform, airflow: AirflowAPI, clone: Path
) -> None:
    push(platform, clone, {"dags/mlflow_env_probe.py": ENV_PROBE_DAG}, "env probe")
    wait_for(lambda: airflow.dag("mlflow_env_probe"), 30, "mlflow_env_probe to appear")

    run_id = airflow.trigger("mlflow_env_probe")
    assert airflow.wait_for_run("mlflow_env_probe", run_id)["state"] == "success"
    xcom = airflow.get(
        f"dags/mlflow_env_probe/dagRuns/{run_id}/taskInstances/tracking_uri/xcomEntries/return_value"
    )

    gate = f"http://127.0.0.1:{platform.env['MLOPS_IDE_MLFLOW_PORT']}/services/mlflow"
    assert xcom.json()["value"] == f"{gate} with a token"  # the pipeline's identity


BROKEN_SYNTAX = "from airflow.sdk import dag\n\n@dag(schedule=None\ndef broken(:\n"
MISSING_IMPORT = "from airflow.sdk import dag\nimport module_that_is_not_installed\n"


@contextmanager
def checks_away(platform: RunningPlatform, *names: str) -> Iterator[None]:
    """The DAG check's sandbox (`sandbox`), the push check (`socket`) unreachable
    (restarting, say): without the first, pushes go through unchecked, and say so."""
    sockets = [platform.home / "push-check" / name for name in names]
    for path in sockets:
        path.rename(path.with_name(f"{path.name}-away"))
    try:
        yield
    finally:
        for path in sockets:
            path.with_name(f"{path.name}-away").rename(path)


def test_broken_dags_are_import_errors_and_the_rest_keeps_working(
    platform: RunningPlatform, airflow: AirflowAPI, clone: Path
) -> None:
    # Real DAG files: Airflow's discovery skips files that mention neither "airflow" nor "dag".
    with checks_away(platform, "sandbox"):  # as broken DAGs land when the check is away
        push(
            platform,
            clone,
            {"dags/broken_syntax.py": BROKEN_SYNTAX, "dags/missing_import.py": MISSING_IMPORT},
            "two broken DAGs",
            "--no-verify",  # her clone's pre-push check would refuse them
        )

    errors = wait_for(
        lambda: (lambda e: e if len(e) >= 2 else None)(airflow.import_errors()), 30, "both import errors"
    )

    assert "SyntaxError" in next(text for name, text in errors.items() if name.endswith("broken_syntax.py"))
    assert "module_that_is_not_installed" in next(
        text for name, text in errors.items() if name.endswith("missing_import.py")
    )
    assert airflow.dag("platform_smoke_test") is not None
    run = airflow.wait_for_run("platform_smoke_test", airflow.trigger("platform_smoke_test"))
    assert run["state"] == "success"


def test_deleted_dag_is_marked_stale(platform: RunningPlatform, airflow: AirflowAPI, clone: Path) -> None:
    wait_for(lambda: airflow.dag("hello_push"), 30, "hello_push to exist")

    push(platform, clone, {"dags/hello_push.py": None}, "remove hello_push")

    wait_for(lambda: (airflow.dag("hello_push") or {}).get("is_stale"), 30, "hello_push to be marked stale")


WEBHOOK_DAG = HELLO_DAG.replace("hello_push", "hello_webhook")


def test_github_push_webhook_makes_airflow_reparse(
    platform: RunningPlatform, airflow: AirflowAPI, clone: Path, tmp_path: Path
) -> None:
    """Kubernetes mode's path from a push to Airflow (GitHub's webhook, not the local push
    check): push while the DAG check and the push check are away (the push goes through,
    unchecked, and says so), then deliver the signed event."""
    secret = "a-webhook-secret-for-the-test"
    with checks_away(platform, "sandbox", "socket"):
        user_commit(clone, {"dags/hello_webhook.py": WEBHOOK_DAG}, "add hello_webhook")
        pushed = platform.terminal("alice", "git", "push", "origin", "main", cwd=clone)
        commit = git(clone, "rev-parse", "HEAD")
        assert pushed.returncode == 0 and "DAG check unavailable" in pushed.stderr, pushed.stderr
        log = tmp_path / "webhook.log"
        airflow_url = platform.airflow_url
        github = GitHubStandIn("client", "client-secret", users={"ci-bot": 1})
        github.tokens["status-token"] = "ci-bot"
        statuses = {
            "MLOPS_IDE_GITHUB_STATUS_TOKEN": "status-token",
            "MLOPS_IDE_GITHUB_URL": "",  # set below, once the stand-in listens
            "MLOPS_IDE_REPO_URL": "https://github.example/team/pipelines.git",
        }
        with (
            github,
            running_push_webhook(
                log,
                secret,
                airflow_url,
                platform.airflow_password,
                **{**statuses, "MLOPS_IDE_GITHUB_URL": github.url},
            ) as url,
        ):
            body = json.dumps({"ref": "refs/heads/main", "after": commit}).encode()
            headers = {
                "X-Hub-Signature-256": github_signature(secret.encode(), body),
                "X-GitHub-Event": "push",
                "X-GitHub-Delivery": f"delivery-{commit}",
            }

            delivered = requests.post(url, data=body, headers=headers, timeout=10)

            assert delivered.status_code == 202, delivered.text
            # well inside the bundle's own 60 s refresh
            wait_for(lambda: airflow.dag("hello_webhook"), 15, "hello_webhook to appear")
            assert "Airflow re-parsing the bundle" in log.read_text()
            # what Airflow made of the commit, as a GitHub commit status: the files broken
            # earlier in this module (pushed unchecked) are still there
            status = wait_for(lambda: next(iter(github.statuses), None), 90, "the commit status")
            assert (status["repo"], status["sha"], status["by"]) == ("team/pipelines", commit, "ci-bot")
            assert status["context"] == "mlops-ide/airflow" and status["state"] == "failure"
            assert "broken_syntax.py: SyntaxError" in status["description"]


def test_only_the_platform_logs_in_to_airflow_with_a_password(
    platform: RunningPlatform, airflow: AirflowAPI
) -> None:
    url = airflow.url + "/auth/token"

    def status(username: str, password: str) -> int:
        return requests.post(url, json={"username": username, "password": password}, timeout=30).status_code

    assert status("mlops-ide-platform", platform.airflow_password) == 201  # the push check's account
    assert status("admin", platform.airflow_password) == 401  # people (hub admins too) log in through the hub
    assert status("mlops-ide-platform", "wrong-password") == 401
    # the hub's password (which a DAG never sees) opens nothing in Airflow, and Airflow's is not the hub's
    assert status("admin", platform.password) == 401
    assert platform.airflow_password != platform.password
    assert requests.get(airflow.url + "/api/v2/dags", timeout=30).status_code == 401


def airflow_session(platform: RunningPlatform, username: str) -> requests.Session:
    """`username` logged in to the hub, then to Airflow through it (OAuth, no second login)."""
    session = platform.login(username)
    landed = session.get(f"{platform.url}/services/airflow/auth/hub/login", timeout=60)
    assert landed.status_code == 200, landed.text[-2000:]
    assert "_token" in session.cookies.get_dict(path="/services/airflow/"), session.cookies
    return session


def test_people_use_airflow_as_themselves_through_the_hub(
    platform: RunningPlatform, airflow: AirflowAPI
) -> None:
    api = f"{platform.url}/services/airflow/api/v2"
    admin, user = (
        airflow_session(platform, "admin"),
        airflow_session(platform, "carol"),
    )  # a hub admin, a user

    assert admin.get(f"{api}/connections", timeout=30).status_code == 200  # a hub admin: Airflow ADMIN
    refused = user.get(f"{api}/connections", timeout=30)
    assert refused.status_code == 403  # a user sees and runs DAGs, not the connections' secrets
    assert (
        user.get(f"{api}/dags", params={"dag_id_pattern": "platform_smoke_test"}, timeout=30).json()[
            "total_entries"
        ]
        == 1
    )
    run = user.post(f"{api}/dags/platform_smoke_test/dagRuns", json={"logical_date": None}, timeout=30)
    assert run.status_code == 200, run.text
    assert user.get(f"{api}/variables", timeout=30).status_code == 403
    assert requests.get(f"{api}/dags", timeout=30).status_code == 401  # nobody without a login
    # a stale or forged login comes to nothing
    forged = requests.get(
        f"{platform.url}/services/airflow/auth/hub/callback", params={"code": "x", "state": "y"}, timeout=30
    )
    assert forged.status_code == 400


PROBE_DAG = """
import json, os, pwd

from airflow.sdk import dag  # what makes Airflow parse the file

# A hostile DAG: at parse time it tries what a pushed file must not be able to do, and
# reports what happened as its import error (which the API shows). It lies low in the push's
# DAG check (a sandbox: tests/platform/test_push_sandbox.py) and reports where Airflow parses it.
def probe():
    found = {"account": pwd.getpwuid(os.getuid()).pw_name, "secrets_in_env": sorted(
        key for key in os.environ
        if key.startswith(("MLOPS_IDE_PASSWORD", "MLOPS_IDE_GIT_TOKEN", "JUPYTERHUB"))
    )}
    for name, path, mode in %s:
        try:
            with open(path, mode) as handle:
                handle.read() if mode == "r" else handle.write("")
            found[name] = "done"
        except OSError as error:
            found[name] = type(error).__name__
    raise RuntimeError("dag probe " + json.dumps(found))


if "AIRFLOW__CORE__EXECUTOR" in os.environ:  # in Airflow; in the sandbox it passes, silent
    probe()
"""


def test_a_pushed_dag_runs_as_the_pipelines_account_and_reaches_no_secret(
    platform: RunningPlatform, airflow: AirflowAPI, clone: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the pipeline's own account needs root (CI runs as root)")
    state = platform.home
    attempts = [
        ("hub password", str(state / "password"), "r"),
        ("cookie secret", str(state / "jupyterhub_cookie_secret"), "r"),
        ("hub database", str(state / "jupyterhub.sqlite"), "r"),
        ("alice's clone", str(clone / "README.md"), "r"),
        ("the branch", str(state / "remote" / "pipelines.git" / "refs" / "heads" / "main"), "a"),
        ("the remote's config", str(state / "remote" / "pipelines.git" / "config"), "a"),
        ("Airflow's password", str(state / "airflow-auth" / "platform_password"), "a"),
        ("a file beside it", str(state / "airflow-auth" / "planted"), "a"),
        ("the push check's folder", str(state / "push-check" / "planted"), "a"),  # no socket of its own there
    ]
    # it raises on purpose in Airflow; past alice's own pre-push check, which would refuse it
    push(
        platform,
        clone,
        {"dags/probe_dag.py": PROBE_DAG % json.dumps(attempts)},
        "a probing DAG",
        "--no-verify",
    )

    error = wait_for(
        lambda: next(
            (text for name, text in airflow.import_errors().items() if name.endswith("probe_dag.py")), None
        ),
        30,
        "the probe's report",
    )
    found = json.loads(error.rsplit("dag probe ", 1)[1].splitlines()[0].rstrip("'\""))

    assert found["account"] == "mlops-ide-pipeline"
    assert found["secrets_in_env"] == []
    assert {name: found[name] for name, _, _ in attempts} == {
        name: "PermissionError" for name, _, _ in attempts
    }


HOLD_PROBE_DAG = """
import errno, json, os, signal, socket

from airflow.sdk import dag  # what makes Airflow parse the file

# A hostile DAG: where Airflow parses it (the pipeline's account) it tries to stop Airflow's
# API server and MLflow, take the API server's port and MLflow's socket (to serve pages on
# the hub's origin), and read MLflow's database; it reports what happened as its import error.
def outcome(attempt):
    try:
        attempt()
        return "done"
    except OSError as error:
        return type(error).__name__ + " " + errno.errorcode.get(error.errno, "?")


def bind_port():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", %(port)d))


def bind_socket():
    with socket.socket(socket.AF_UNIX) as taken:
        taken.bind(%(socket)r)


def probe():
    found = {"kill " + name: outcome(lambda: os.kill(pid, signal.SIGKILL)) for name, pid in %(pids)s.items()}
    found["bind the API server's port"] = outcome(bind_port)
    found["remove MLflow's socket"] = outcome(lambda: os.unlink(%(socket)r))
    found["bind MLflow's socket"] = outcome(bind_socket)
    found["read MLflow's database"] = outcome(lambda: open(%(database)r, "rb").read(16))
    raise RuntimeError("hold probe " + json.dumps(found))


if "AIRFLOW__CORE__EXECUTOR" in os.environ:  # in Airflow; in the push's sandbox it passes, silent
    probe()
"""


def account_of(pid: int) -> str:
    uid = next(
        line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")
    )
    return pwd.getpwuid(int(uid.split()[1])).pw_name


def test_a_pushed_dag_can_neither_stop_nor_replace_airflows_api_server_or_mlflow(
    platform: RunningPlatform, airflow: AirflowAPI, clone: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("the services' own accounts need root (CI runs as root)")
    api_server, mlflow = platform.service_pid(b"gunicorn: master"), platform.service_pid(b"mlflow")
    pids = {
        **{f"the API server's {pid}": pid for pid in (api_server, *descendants(api_server))},
        **{f"MLflow's {pid}": pid for pid in (mlflow, *descendants(mlflow))},
    }
    names = {
        "port": int(platform.env["MLOPS_IDE_AIRFLOW_PORT"]),
        "socket": str(platform.home / "mlflow-socket" / "sock"),
        "pids": json.dumps(pids),
        "database": str(platform.home / "mlflow" / "mlflow.db"),
    }
    push(
        platform,
        clone,
        {"dags/hold_probe.py": HOLD_PROBE_DAG % names},
        "a DAG that takes over",
        "--no-verify",
    )

    error = wait_for(
        lambda: next(
            (text for name, text in airflow.import_errors().items() if name.endswith("hold_probe.py")), None
        ),
        90,  # a deadline, not a target: one CI run of the whole suite needed over 30 s
        "the probe's report",
    )
    found = json.loads(error.rsplit("hold probe ", 1)[1].splitlines()[0].rstrip("'\""))
    push(platform, clone, {"dags/hold_probe.py": None}, "the probe goes")
    time.sleep(3)  # what a kill would have done shows by now; the supervisor restarts within seconds
    session = platform.login("bob")
    airflow_health = session.get(f"{platform.url}/services/airflow/api/v2/monitor/health", timeout=30)
    mlflow_health = session.get(f"{platform.url}/services/mlflow/health", timeout=30)

    assert {name: found[f"kill {name}"] for name in pids} == dict.fromkeys(pids, "PermissionError EPERM")
    assert found["bind the API server's port"] == "OSError EADDRINUSE"
    assert found["remove MLflow's socket"] == "PermissionError EACCES"
    assert found["bind MLflow's socket"] == "PermissionError EACCES"
    assert found["read MLflow's database"] == "PermissionError EACCES"
    assert (account_of(api_server), account_of(mlflow)) == ("mlops-ide-airflow", "mlops-ide-mlflow")
    assert [is_alive(pid) for pid in pids.values()] == [True] * len(pids)
    assert airflow_health.json()["metadatabase"]["status"] == "healthy"  # the real Airflow, through the hub
    assert mlflow_health.status_code == 200 and mlflow_health.text == "OK"


def mlflow_as(token: str | None) -> requests.Session:
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    return session


def raw_post(url: str, body: dict, token: str) -> int:
    """POST with the path exactly as given (no client normalising it); the status."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connection.request("POST", parts.path, json.dumps(body), headers)
    status = connection.getresponse().status
    connection.close()
    return status


def test_user_server_logs_a_run_to_mlflow_as_its_user(platform: RunningPlatform, clone: Path) -> None:
    """MLflow's own client, in alice's server (her account, her environment): the run is
    recorded as hers, whatever the client says its user is."""
    environ = platform.server_environ("alice")
    script = (
        "import mlflow\n"
        "mlflow.set_experiment('alice-first')\n"
        "with mlflow.start_run() as run:\n"
        "    mlflow.log_metric('accuracy', 0.93)\n"
        "print(run.info.run_id)\n"
    )
    logged = platform.terminal("alice", "python", "-c", script, cwd=clone)  # her terminal's python

    assert logged.returncode == 0, logged.stderr[-3000:]
    run_id = logged.stdout.split()[-1]
    api = f"{environ['MLFLOW_TRACKING_URI']}/api/2.0/mlflow"
    stored = mlflow_as(environ["MLFLOW_TRACKING_TOKEN"]).get(f"{api}/runs/get", params={"run_id": run_id})
    run = stored.json()["run"]
    assert environ["MLFLOW_TRACKING_URI"].endswith("/services/mlflow")
    assert run["data"]["metrics"][0]["value"] == 0.93
    assert run["info"]["user_id"] == "alice"
    assert {"key": "mlflow.user", "value": "alice"} in run["data"]["tags"]


def test_the_users_clone_is_the_pipeline_repository_with_its_python_kernel_and_dag_commands(
    platform: RunningPlatform, clone: Path
) -> None:
    files = git(clone, "ls-files").splitlines()
    platform_only = [
        f for f in files if f.startswith(("jupyterhub_config", "deploy/", "images/", "src/mlops_ide"))
    ]
    assert platform_only == [] and "dags/cnn_skin_cancer_workflow.py" in files and "Dockerfile" in files
    assert "mlops-ide dag check" in (clone / "README.md").read_text()
    assert "mlops-ide dag check --pre-push" in (clone / ".git" / "hooks" / "pre-push").read_text()

    probe = "import keras, mlflow, numpy, skin_cancer; print(skin_cancer.__file__)"
    imported = platform.terminal("alice", "python", "-c", probe, cwd=clone.parent)
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert imported.stdout.strip() == str(clone / "src" / "skin_cancer" / "__init__.py")  # her working copy's
    server_token = platform.server_environ("alice")["JUPYTERHUB_API_TOKEN"]
    kernels = requests.get(
        f"{platform.url}/user/alice/api/kernelspecs",
        headers={"Authorization": f"token {server_token}"},
        timeout=30,
    ).json()
    python3 = kernels["kernelspecs"]["python3"]["spec"]
    assert python3["display_name"] == "Python 3 (pipeline)"
    assert python3["argv"][0] == str(platform.home / "bin" / "python")

    dataset = platform.home / "data" / "skin-lesions"
    listed = platform.terminal(
        "alice", "python", "-c", f"import os; print(os.listdir({str(dataset)!r}))", cwd=clone
    )
    assert listed.returncode == 0 and "train" in listed.stdout, listed.stderr[-2000:]  # she reads the data
    if os.geteuid() == 0:  # and only the pipeline writes it
        planted = platform.terminal("alice", "touch", str(dataset / "planted"), cwd=clone)
        assert planted.returncode != 0 and not (dataset / "planted").exists()
    seeded = ("dags/cnn_skin_cancer_workflow.py", "dags/platform_smoke_test.py")
    checked = platform.terminal("alice", "mlops-ide", "dag", "check", *seeded, cwd=clone)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "without the warm check" not in checked.stderr  # her own, in her home, as her
    # a DAG file (a teammate's, say) run by the check sees none of her server's tokens
    (clone / "dags" / "env_probe.py").write_text(TOKEN_PROBE_DAG)
    probed = platform.terminal("alice", "mlops-ide", "dag", "check", "dags/env_probe.py", cwd=clone)
    (clone / "dags" / "env_probe.py").unlink()
    # MLFLOW_DISABLE_TELEMETRY: her server's (MLflow's usage data off), not a credential
    seen = "seen: MLFLOW_DISABLE_TELEMETRY,MLFLOW_TRACKING_URI\n"
    assert f"dags/env_probe.py:4: RuntimeError: {seen}" in probed.stdout, probed.stdout


TOKEN_PROBE_DAG = """from airflow.sdk import dag
import os
seen = sorted(k for k in os.environ if "TOKEN" in k or k.startswith(("JUPYTERHUB", "MLFLOW")))
raise RuntimeError("seen: " + ",".join(seen))
"""


def test_mlflow_refuses_whoever_does_not_say_who_they_are(platform: RunningPlatform) -> None:
    gate = f"http://127.0.0.1:{platform.env['MLOPS_IDE_MLFLOW_PORT']}/services/mlflow"

    api = requests.get(f"{gate}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=30)
    forged = mlflow_as("not-a-token").get(f"{gate}/api/2.0/mlflow/experiments/search", timeout=30)
    page = requests.get(f"{gate}/", headers={"Accept": "text/html"}, allow_redirects=False, timeout=30)

    assert api.status_code == 401 and "MLFLOW_TRACKING_TOKEN" in api.json()["message"]
    assert forged.status_code == 401
    assert page.status_code == 302 and "/hub/api/oauth2/authorize" in page.headers["Location"]


def test_mlflow_itself_listens_on_a_socket_users_cannot_open(platform: RunningPlatform, clone: Path) -> None:
    sock = platform.home / "mlflow-socket" / "sock"
    probe = "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])"

    tried = platform.terminal("alice", str(Tools.load().python), "-c", probe, str(sock), cwd=clone)

    assert sock.is_socket()
    assert tried.returncode != 0 and "PermissionError" in tried.stderr


def test_only_the_pipeline_moves_the_champion_and_users_change_only_their_runs(
    platform: RunningPlatform, clone: Path
) -> None:
    environ = platform.server_environ("alice")
    api = f"{environ['MLFLOW_TRACKING_URI']}/api/2.0/mlflow"
    pipeline = mlflow_as((platform.home / "airflow-auth" / "mlflow_token").read_text().strip())
    alice = mlflow_as(environ["MLFLOW_TRACKING_TOKEN"])
    assert environ["MLFLOW_TRACKING_TOKEN"] != pipeline.headers["Authorization"].split()[1]
    # the pipeline registers a model with a version, and makes it champion
    experiment = pipeline.post(f"{api}/experiments/create", json={"name": "gate-pipeline"}).json()
    run = pipeline.post(f"{api}/runs/create", json={"experiment_id": experiment["experiment_id"]}).json()
    run_id, artifacts = run["run"]["info"]["run_id"], run["run"]["info"]["artifact_uri"]
    assert pipeline.post(f"{api}/registered-models/create", json={"name": "gate-model"}).status_code == 200
    created = pipeline.post(
        f"{api}/model-versions/create",
        json={"name": "gate-model", "source": f"{artifacts}/model", "run_id": run_id},
    )
    assert created.status_code == 200, created.text
    version = created.json()["model_version"]["version"]
    alias = {"name": "gate-model", "alias": "champion", "version": version}
    assert pipeline.post(f"{api}/registered-models/alias", json=alias).status_code == 200

    moved = alice.post(f"{api}/registered-models/alias", json={**alias, "version": "1"})
    registered = alice.post(f"{api}/registered-models/create", json={"name": "alice-model"})
    deleted = alice.delete(f"{api}/registered-models/alias", json={"name": "gate-model", "alias": "champion"})
    tampered = alice.post(
        f"{api}/runs/log-metric", json={"run_id": run_id, "key": "accuracy", "value": 1.0, "timestamp": 1}
    )
    overwritten = alice.put(
        f"{environ['MLFLOW_TRACKING_URI']}/api/2.0/mlflow-artifacts/artifacts/"
        f"{experiment['experiment_id']}/{run_id}/artifacts/model/weights.bin",
        data=b"not the model",
    )

    # the review's ways around the rules: an encoded path, another spelling of the run,
    # the UI's upload, an experiment stored elsewhere, anything not listed for users
    encoded = raw_post(api + "/registered-model%73/alias", alias, environ["MLFLOW_TRACKING_TOKEN"])
    camel = alice.post(
        f"{api}/runs/log-metric", json={"runId": run_id, "key": "a", "value": 1.0, "timestamp": 1}
    )
    uploaded = alice.post(
        f"{environ['MLFLOW_TRACKING_URI']}/ajax-api/2.0/mlflow/upload-artifact",
        params={"run_uuid": run_id, "path": "model/weights.bin"},
        data=b"not the model",
    )
    elsewhere = alice.post(
        f"{api}/experiments/create", json={"name": "mine", "artifact_location": "file:///tmp/anywhere"}
    )
    tagged = alice.post(
        f"{api}/experiments/set-experiment-tag",
        json={"experiment_id": experiment["experiment_id"], "key": "owner", "value": "alice"},
    )
    assert encoded == 403  # decoded as MLflow decodes it, then refused (requests would tidy %73)
    for refused in (camel, uploaded):
        assert refused.status_code == 403 and "service:pipeline" in refused.json()["message"], refused.text
    for refused in (elsewhere, tagged):
        assert refused.status_code == 403, refused.text
    for refused in (moved, registered, deleted):
        assert refused.status_code == 403 and "pipeline" in refused.json()["message"], refused.text
    for refused in (tampered, overwritten):
        assert refused.status_code == 403 and "service:pipeline" in refused.json()["message"], refused.text
    champion = alice.get(f"{api}/registered-models/alias", params={"name": "gate-model", "alias": "champion"})
    assert champion.status_code == 200 and champion.json()["model_version"]["version"] == version


def test_home_page_health_covers_airflow_and_mlflow(platform: RunningPlatform) -> None:
    session = platform.login("bob")

    health = session.get(f"{platform.url}/hub/platform/health", timeout=30)

    assert health.json() == {"Airflow": "healthy", "MLflow": "healthy"}
    assert requests.get(
        f"{platform.url}/hub/platform/health", allow_redirects=False, timeout=30
    ).status_code in (302, 403)


@pytest.mark.parametrize(
    "name, marker, health_path",
    [
        ("MLflow", b"mlflow", "/services/mlflow/health"),  # through its gate
        ("Airflow API server", b"gunicorn: master", "/api/v2/monitor/health"),  # its process title
    ],
)
def test_a_killed_service_is_restarted_within_seconds(
    platform: RunningPlatform, airflow: AirflowAPI, name: str, marker: bytes, health_path: str
) -> None:
    port = platform.env["MLOPS_IDE_MLFLOW_PORT" if name == "MLflow" else "MLOPS_IDE_AIRFLOW_PORT"]
    service = platform.service_pid(marker)

    os.kill(service, signal.SIGKILL)
    killed = time.monotonic()

    assert wait_for(lambda: not is_alive(service), 10, f"{name} to die")
    wait_for(lambda: f"!! {name} exited with -9" in platform.log(), 10, "the platform to notice")
    wait_for(lambda: f"   {name} restarted" in platform.log(), 10, "the platform to restart it")
    wait_for(lambda: answers(f"http://127.0.0.1:{port}{health_path}"), 60, f"{name} to answer again")
    assert time.monotonic() - killed < 60


def test_nothing_the_platform_runs_listens_beyond_loopback(platform: RunningPlatform, clone: Path) -> None:
    """Hub, proxy, MLflow, Airflow (no log servers) and a user's server: loopback only."""
    ours = {str(pid) for pid in descendants(platform.proc.pid)}
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    addresses = {
        line.split()[3] for line in listening.splitlines() if any(f"pid={pid}," in line for pid in ours)
    }

    assert addresses, "found none of the platform's sockets"
    assert {address.rsplit(":", 1)[0] for address in addresses} <= {"127.0.0.1", "[::1]"}, addresses


def push_output(
    platform: RunningPlatform, clone: Path, files: dict[str, str | None], message: str, *options: str
):
    """Commit as alice and push from her terminal; the push's result (its output included)."""
    user_commit(clone, files, message)
    return platform.terminal("alice", "git", "push", *options, "origin", "main", cwd=clone)


def remote_head(platform: RunningPlatform) -> str:
    return git(platform.home / "remote" / "pipelines.git", "rev-parse", "main")


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("syntax.py", "from airflow.sdk import dag\n\n@dag(schedule=None\ndef broken(:\n", ":4: SyntaxError"),
        (
            "missing.py",
            "from airflow.sdk import dag\nimport module_that_is_not_installed\n",
            ":2: ModuleNotFoundError",
        ),
        (
            "network.py",
            "from airflow.sdk import dag\nimport urllib.request\nurllib.request.urlopen('http://example.com')\n",
            ":3: ",
        ),
    ],
)
def test_a_push_of_a_dag_that_would_not_load_is_refused_with_file_and_line(
    platform: RunningPlatform, airflow: AirflowAPI, clone: Path, name: str, text: str, expected: str
) -> None:
    before = remote_head(platform)

    pushed = push_output(platform, clone, {f"dags/{name}": text}, f"broken {name}")

    # one check per push: her clone's pre-push hook leaves it to the platform's remote
    assert "mlops-ide: the platform's remote checks this push's DAG files" in pushed.stderr
    assert "before the push" not in pushed.stderr  # her clone checked nothing itself
    assert pushed.returncode != 0
    assert "remote: mlops-ide: push refused" in pushed.stderr
    assert f"remote:   dags/{name}{expected}" in pushed.stderr, pushed.stderr
    assert remote_head(platform) == before  # the team's branch never saw it
    git(clone, "reset", "--quiet", "--hard", "origin/main")  # alice drops her broken commit


def test_a_good_push_says_live_and_a_removal_says_removed(
    platform: RunningPlatform, airflow: AirflowAPI, clone: Path
) -> None:
    added = push_output(
        platform, clone, {"dags/live_one.py": HELLO_DAG.replace("hello_push", "live_one")}, "live one"
    )
    removed = push_output(platform, clone, {"dags/live_one.py": None}, "remove live one")

    assert added.returncode == 0, added.stderr
    assert "remote: mlops-ide: DAG check passed" in added.stderr
    assert "remote: mlops-ide: live: live_one" in added.stderr, added.stderr
    assert removed.returncode == 0 and "remote: mlops-ide: removed: live_one" in removed.stderr, (
        removed.stderr
    )
    log = (platform.home / "logs" / "airflow-push-check.log").read_text()
    assert "by alice: live: live_one" in log
    # the verdict is kept for `mlops-ide dag status` too (mlops_ide/portable/push_status.py)
    status = json.loads((platform.home / "push-status" / "status.json").read_text())
    shown = platform.terminal("alice", "mlops-ide", "dag", "status", cwd=clone)
    assert status["commit"] == remote_head(platform) and "removed: live_one" in status["lines"]
    assert shown.returncode == 0 and "  removed: live_one" in shown.stdout, shown.stdout + shown.stderr


def test_a_push_of_a_helper_airflow_ignores_is_not_waited_for(platform: RunningPlatform, clone: Path) -> None:
    helper = (clone / "dags" / "pipeline_steps.py").read_text()  # in dags/.airflowignore
    pushed = push_output(platform, clone, {"dags/pipeline_steps.py": helper + "\n# edited\n"}, "a helper")

    assert pushed.returncode == 0, pushed.stderr
    assert "still parsing" not in pushed.stderr  # no verdict ever comes for a file Airflow never opens
    assert "remote: mlops-ide: next runs use" in pushed.stderr, pushed.stderr


CODE_PROBE_DAG = """
from airflow.sdk import dag, task


@dag(dag_id="code_probe", schedule=None, tags=["test"])
def code_probe():
    @task
    def version() -> str:
        import pathlib

        # a file of this run's commit, outside dags/ (as src/ is for the real pipeline)
        return (pathlib.Path(__file__).resolve().parents[1] / "src" / "probe_version.txt").read_text().strip()

    version()


code_probe()
"""


def test_a_push_of_code_outside_dags_is_used_by_the_next_run_at_once(
    platform: RunningPlatform, airflow: AirflowAPI, clone: Path
) -> None:
    push(platform, clone, {"dags/code_probe.py": CODE_PROBE_DAG, "src/probe_version.txt": "one\n"}, "probe")
    wait_for(lambda: airflow.dag("code_probe"), 30, "code_probe")

    pushed = push_output(platform, clone, {"src/probe_version.txt": "two\n"}, "code only")
    commit = git(clone, "rev-parse", "HEAD")
    run_id = airflow.trigger("code_probe")  # at once: no waiting for Airflow's own refresh
    run = airflow.wait_for_run("code_probe", run_id)

    assert pushed.returncode == 0, pushed.stderr
    assert f"next runs use {commit[:12]}" in pushed.stderr, pushed.stderr
    assert run["bundle_version"] == commit
    xcom = airflow.get(f"dags/code_probe/dagRuns/{run_id}/taskInstances/version/xcomEntries/return_value")
    assert xcom.json()["value"] == "two"


def test_the_skip_option_is_for_hub_admins_and_alice_is_told_who_they_are(
    platform: RunningPlatform, airflow: AirflowAPI, clone: Path
) -> None:
    """An admin's skip: tests/platform/test_push_sandbox.py (this platform's admins have no server)."""
    before = remote_head(platform)
    broken = "from airflow.sdk import dag\nimport module_that_is_not_installed\n"
    options = ("--no-verify", "-o", "skip-dag-check")  # past her own pre-push check, and the remote's
    pushed = push_output(platform, clone, {"dags/skipped.py": broken}, "skip", *options)

    assert pushed.returncode != 0, pushed.stderr
    assert "only a hub admin may skip the DAG check" in pushed.stderr
    assert "ask one of the hub's admins (admin, ops)" in pushed.stderr, pushed.stderr
    assert remote_head(platform) == before
    git(clone, "reset", "--quiet", "--hard", "origin/main")


def test_a_huge_dags_folder_is_refused(platform: RunningPlatform, clone: Path) -> None:
    before = remote_head(platform)

    huge = {"dags/weights.py": "# " + "0" * (21 * 2**20) + "\n"}
    pushed = push_output(
        platform, clone, huge, "huge", "--no-verify"
    )  # the remote's limit, whatever the client

    assert pushed.returncode != 0 and "the DAG folder (dags/) is over 20 MB" in pushed.stderr, pushed.stderr
    assert remote_head(platform) == before
    git(clone, "reset", "--quiet", "--hard", "origin/main")


def test_only_the_git_service_and_root_reach_the_push_check(platform: RunningPlatform, clone: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("accounts need root")
    for name in ("socket", "sandbox"):  # the push check's, the DAG check sandbox's
        socket_path = platform.home / "push-check" / name
        probe = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({str(socket_path)!r})"

        result = platform.terminal("alice", "python3", "-c", probe, cwd=clone)

        assert result.returncode != 0 and "PermissionError" in result.stderr


@pytest.mark.browser
def test_one_hub_login_opens_airflow_and_mlflow_in_the_browser(browser, platform: RunningPlatform) -> None:
    """Chromium: log in to the hub once; Airflow's UI and MLflow's open as that person,
    with no login page of their own."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    log_in(page, platform, "dana")
    page.wait_for_url("**/user/dana/**", timeout=90_000)

    page.goto(f"{platform.url}/services/airflow/dags")
    page.wait_for_function("() => document.title.includes('Airflow')", timeout=60_000)
    page.get_by_text("platform_smoke_test").first.wait_for(timeout=60_000)  # the DAG list, as dana
    airflow_url = page.url
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "airflow.png"))

    page.goto(f"{platform.url}/services/mlflow/")
    page.wait_for_function("() => document.querySelectorAll('#root *').length > 50", timeout=60_000)

    assert airflow_url.startswith(f"{platform.url}/services/airflow/"), airflow_url
    assert page.url.startswith(f"{platform.url}/services/mlflow/")
    assert page.locator("#username_input").count() == 0  # no second login anywhere
    page.close()
