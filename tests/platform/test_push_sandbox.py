"""A push the remote has not taken yet is checked in a sandbox (as root, with the platform's
accounts): its DAG code holds no token or secret, reaches no network (not from a child
process either), and leaves no process; and only a hub admin may skip the check. Real
pushes, the platform's real hooks, services and OS accounts; a stand-in answers for the hub."""

from __future__ import annotations

import ast
import json
import os
import pwd
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlops_ide import names
from mlops_ide.machine.components import git
from mlops_ide.machine.components.base import Inputs
from mlops_ide.machine.state.credentials import ensure_secret
from tests.support.gitrepos import git as run_git
from tests.support.gitrepos import user_commit
from tests.support.local_platform import free_port_base, wait_for
from tests.support.push_remote import (
    logs,
    platform_for,
    processes_of_uid,
    push,
    push_services,
    remote_with_hooks,
    running,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox's accounts need root")

ENVIRONMENT_DAG = (
    "import os\nfrom airflow.sdk import dag\nraise ValueError('env: ' + repr(dict(os.environ)))\n"
)

SECRETS_DAG = """
from pathlib import Path
from airflow.sdk import dag
seen = []
for path in {paths!r}:
    try:
        seen.append(path + ' READ ' + Path(path).read_text())
    except OSError as error:
        seen.append(path + ' ' + type(error).__name__)
raise ValueError('secrets: ' + ' | '.join(seen))
"""

NETWORK_DAG = """
import subprocess, sys
from airflow.sdk import dag
probe = "import socket; socket.create_connection(('127.0.0.1', {port}), 3); print('CONNECTED')"
done = subprocess.run([sys.executable, '-c', probe], capture_output=True, text=True)
raise ValueError('network: ' + (done.stdout + done.stderr).strip().splitlines()[-1])
"""

SLEEPER_DAG = """
import os, subprocess, sys, time
from pathlib import Path
from airflow.sdk import dag
# files for later checks to load: a plugin in Airflow's home, one beside its own folder
(Path(os.environ["AIRFLOW_HOME"]) / "plugins").mkdir(exist_ok=True)
(Path(os.environ["AIRFLOW_HOME"]) / "plugins" / "planted.py").write_text("# later checks would run me")
(Path(os.environ["HOME"]).parent / "planted").mkdir()
(Path(os.environ["HOME"]).parent / "planted").chmod(0)
if os.fork() == 0:
    os.setsid()
    time.sleep(600)  # sandbox-sleeper
    os._exit(0)
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)  # sandbox-sleeper'],
                 start_new_session=True)
"""


MEMORY_DAG = "from airflow.sdk import dag\nheld = bytearray(3 * 2**30)\n"
BIG_FILE_DAG = (
    "import os\nfrom airflow.sdk import dag\n"
    "open(os.environ['TMPDIR'] + '/big', 'wb').write(bytes(100 * 2**20))\n"
)


FLOOD_DAG = """
import os
from airflow.sdk import dag
for fd in os.listdir('/proc/self/fd'):  # the pipe of the check's answer, whatever its number
    try:
        if os.readlink(f'/proc/self/fd/{fd}').startswith('pipe:'):
            os.write(int(fd), b'x' * 6 * 2**20)
    except OSError:
        pass
"""


FORGER_DAG = """
import os
from airflow.sdk import dag
for fd in os.listdir('/proc/self/fd'):  # the hook's connection, if the check kept it open
    try:
        if os.readlink(f'/proc/self/fd/{fd}').startswith('socket:'):
            os.write(int(fd), b'{"problems": [], "broken": [], "summary": "forged"}\\n')
    except OSError:
        pass
raise ValueError('broken all the same')
"""


@pytest.fixture
def sandboxed(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A remote checked in the sandbox, with the secrets a DAG would want in the state
    folder (Airflow's JWT secret, the pipeline's MLflow token); yields (clone, state)."""
    with remote_with_hooks(tmp_path, free_port_base(), accounts=True) as (clone, settings):
        yield clone, settings.home


def secrets_of(state: Path) -> list[str]:
    found = [(state / "airflow-auth" / name).read_text().strip() for name in ("jwt_secret", "mlflow_token")]
    assert all(len(value) >= 20 for value in found)
    return found


def leftovers(uid: int) -> list[str]:
    """Processes of the sandbox account other than sandbox servers (the first process of
    their PID namespace): what a check left."""
    return [
        status.splitlines()[0]
        for status in processes_of_uid(uid).values()
        if not next(line for line in status.splitlines() if line.startswith("NSpid:")).endswith("\t1")
    ]


def add_mlflow_token(state: Path) -> None:
    pipeline = pwd.getpwnam(names.PIPELINE_ACCOUNT)
    ensure_secret(
        state / "airflow-auth" / "mlflow_token", lambda: "mlflow-token-" + "x7" * 16, pipeline.pw_gid
    )


def test_a_pushed_dag_sees_no_secret_in_its_environment_nor_its_files(sandboxed: tuple[Path, Path]) -> None:
    clone, state = sandboxed
    add_mlflow_token(state)
    paths = [str(state / "airflow-auth" / name) for name in ("jwt_secret", "mlflow_token")]
    user_commit(
        clone,
        {"dags/env.py": ENVIRONMENT_DAG, "dags/secrets.py": SECRETS_DAG.format(paths=paths)},
        "a DAG that looks for secrets",
    )

    pushed = push(clone)

    assert pushed.returncode != 0 and "push refused" in pushed.stderr
    assert "dags/env.py:3: ValueError: env: {" in pushed.stderr, pushed.stderr
    assert "'HOME':" in pushed.stderr  # the environment was printed: nothing secret in it
    environment = ast.literal_eval(pushed.stderr.split("env: ")[1].split("\n")[0].strip())
    # the one MLflow name a DAG may see: the variable the platform answers (a URL, no credential)
    assert environment.pop("AIRFLOW_VAR_MLFLOW_TRACKING_URI").startswith("http://127.0.0.1:")
    for name in ("TOKEN", "SECRET", "PASSWORD", "AIRFLOW__API", "MLFLOW"):
        assert not [key for key in environment if name in key.upper()], environment
    assert f"{paths[0]} PermissionError" in pushed.stderr and f"{paths[1]} PermissionError" in pushed.stderr
    for value in secrets_of(state):
        assert value not in pushed.stderr and value not in logs_of(state)


def logs_of(state: Path) -> str:
    return "".join(path.read_text(errors="replace") for path in (state / "logs").glob("*.log"))


def test_a_pushed_dags_child_process_reaches_no_network(sandboxed: tuple[Path, Path]) -> None:
    clone, _ = sandboxed
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.5)
    user_commit(clone, {"dags/net.py": NETWORK_DAG.format(port=listener.getsockname()[1])}, "phone home")

    pushed = push(clone)

    with pytest.raises(TimeoutError):
        listener.accept()  # nobody came
    listener.close()
    assert pushed.returncode != 0
    assert (
        "dags/net.py:6: ValueError: network: OSError: [Errno 101] Network is unreachable" in pushed.stderr
    ), pushed.stderr


def test_nothing_a_checked_dag_starts_or_writes_outlives_the_check_not_even_in_a_session_of_its_own(
    sandboxed: tuple[Path, Path],
) -> None:
    clone, state = sandboxed
    uid = pwd.getpwnam(names.DAG_CHECK_ACCOUNT).pw_uid
    user_commit(clone, {"dags/sleeper.py": SLEEPER_DAG}, "a DAG that leaves sleepers")

    pushed = push(clone)

    assert pushed.returncode == 0 and "DAG check passed" in pushed.stderr, pushed.stderr
    assert wait_for(lambda: not leftovers(uid), 5, "no process of the check left") is not None
    (server,) = [
        pid for pid in processes_of_uid(uid) if str(state) in Path(f"/proc/{pid}/cmdline").read_text()
    ]
    assert "Operation not permitted" in trace_as(
        pwd.getpwnam(names.DAG_CHECK_ACCOUNT), server
    )  # not dumpable: its own account cannot trace it
    assert [path.name for path in (state / "dag-check").rglob("*")] == ["airflow-home"]


TRACE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.ptrace(16, int(sys.argv[1]), 0, 0) == 0:  # PTRACE_ATTACH
    libc.ptrace(17, int(sys.argv[1]), 0, 0)  # PTRACE_DETACH
    print("attached")
else:
    print(os.strerror(ctypes.get_errno()))
"""


def trace_as(account: pwd.struct_passwd, pid: int) -> str:
    """What a process of `account` gets when it tries to trace `pid`."""
    ids = [f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups"]
    setpriv = ["setpriv", *ids, sys.executable]
    return subprocess.run(
        [*setpriv, "-c", TRACE, str(pid)], capture_output=True, text=True, timeout=30
    ).stdout


def test_a_pushed_dag_gets_no_more_memory_or_disk_than_a_check_needs(sandboxed: tuple[Path, Path]) -> None:
    clone, _ = sandboxed
    user_commit(clone, {"dags/memory.py": MEMORY_DAG, "dags/big_file.py": BIG_FILE_DAG}, "greedy DAGs")

    pushed = push(clone)

    assert pushed.returncode != 0
    assert "dags/memory.py:2: MemoryError" in pushed.stderr, pushed.stderr
    assert "dags/big_file.py:3: OSError: [Errno 27] File too large" in pushed.stderr, pushed.stderr


def test_a_dag_that_floods_the_checks_answer_is_refused_and_the_next_push_is_checked(
    sandboxed: tuple[Path, Path],
) -> None:
    clone, _ = sandboxed
    user_commit(clone, {"dags/flood.py": FLOOD_DAG}, "a flood")

    flooded = push(clone)
    run_git(clone, "reset", "--quiet", "--hard", "origin/main")
    user_commit(clone, {"dags/broken.py": "from airflow.sdk import dag\nraise ValueError('no')\n"}, "broken")
    next_one = push(clone)

    assert flooded.returncode != 0 and "the check answered too much" in flooded.stderr, flooded.stderr
    assert next_one.returncode != 0 and "dags/broken.py:2: ValueError: no" in next_one.stderr, next_one.stderr


def test_a_checked_dag_cannot_answer_the_hook_in_the_checks_place(sandboxed: tuple[Path, Path]) -> None:
    clone, _ = sandboxed
    user_commit(clone, {"dags/forger.py": FORGER_DAG}, "a forged verdict")

    pushed = push(clone)

    assert pushed.returncode != 0 and "forged" not in pushed.stderr, pushed.stderr
    assert "dags/forger.py:10: ValueError: broken all the same" in pushed.stderr, pushed.stderr


class HubStandIn:
    """The hub's `GET /hub/api/user` for a token: the model of its user (admin or not)."""

    def __init__(self, port: int, users: dict[str, dict]):
        self.users = users
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                token = self.headers.get("Authorization", "").removeprefix("token ")
                model = stand_in.users.get(token)
                body = json.dumps(model).encode() if model and self.path == "/hub/api/user" else b"{}"
                self.send_response(200 if model else 403)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def hub_user(name: str, admin: bool) -> dict:
    return {"kind": "user", "name": name, "admin": admin, "scopes": [names.GIT_SCOPE]}


def test_only_a_hub_admin_may_skip_the_dag_check(tmp_path: Path) -> None:
    """Through the git service, as the pushers the hub names: bob (not an admin) is told who
    may; ada (an admin) skips; a header of bob's own cannot make him one."""
    port = free_port_base()
    platform: Inputs = platform_for(
        tmp_path,
        accounts=True,
        MLOPS_IDE_PORT=str(port),
        MLOPS_IDE_GIT_PORT=str(free_port_base()),
        MLOPS_IDE_AIRFLOW_PORT=str(free_port_base()),
        MLOPS_IDE_ADMIN_USERS="ada,ops",
    )
    hub = HubStandIn(
        platform.settings.hub_port, {"bob-token": hub_user("bob", False), "ada-token": hub_user("ada", True)}
    )
    (git_service,) = git.processes(platform)
    git_service.ready_url = None
    try:
        with running(*push_services(platform)):
            git_service.start()
            url = git.repo_url(platform.settings)
            wait_for(lambda: _answers(git.url(platform.settings) + "health"), 30, "the git service")
            clone = tmp_path / "clone"
            run_git(tmp_path, "clone", "--quiet", url.replace("://", "://x:ada-token@"), str(clone))
            user_commit(clone, {"dags/broken.py": "import module_that_is_not_installed\n"}, "broken")
            as_bob = ["-c", "http.extraHeader=Mlops-Ide-Pusher-Admin: 1"]
            bob = _push_as(clone, url, "bob-token", as_bob)
            ada = _push_as(clone, url, "ada-token")
    finally:
        git_service.ask_to_stop()
        git_service.wait_stopped(time.monotonic() + 10)
        hub.close()

    assert bob.returncode != 0, bob.stderr
    assert "only a hub admin may skip the DAG check" in bob.stderr
    assert "ask one of the hub's admins (ada, ops), or fix what the check says" in bob.stderr, bob.stderr
    assert ada.returncode == 0, ada.stderr
    assert "DAG check skipped (skip-dag-check)" in ada.stderr
    assert "SKIPPED by ada" in logs(platform.settings)


def _answers(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _push_as(clone: Path, url: str, token: str, extra: list[str] | None = None):
    authed = url.replace("://", f"://x:{token}@")
    return subprocess.run(
        ["git", *(extra or []), "push", "-o", "skip-dag-check", authed, "HEAD:main"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_only_the_named_pushers_may_push_the_tracked_branch(tmp_path: Path) -> None:
    """MLOPS_IDE_TRACKED_BRANCH_PUSHERS=carol,admins, through the git service as the hub names
    the pushers: bob's push to main is refused, naming who may; his own branch is taken;
    carol's and ada's (an admin's) pushes to main are taken."""
    platform: Inputs = platform_for(
        tmp_path,
        accounts=True,
        MLOPS_IDE_PORT=str(free_port_base()),
        MLOPS_IDE_GIT_PORT=str(free_port_base()),
        MLOPS_IDE_AIRFLOW_PORT=str(free_port_base()),
        MLOPS_IDE_ADMIN_USERS="ada,ops",
        MLOPS_IDE_TRACKED_BRANCH_PUSHERS="carol,admins",
    )
    tokens = {
        "bob-token": hub_user("bob", False),
        "carol-token": hub_user("carol", False),
        "ada-token": hub_user("ada", True),
    }
    hub = HubStandIn(platform.settings.hub_port, tokens)
    (git_service,) = git.processes(platform)
    git_service.ready_url = None
    url = git.repo_url(platform.settings)

    def push_as(token: str, files: dict[str, str], refspec: str) -> subprocess.CompletedProcess:
        user_commit(clone, files, f"{token}'s work")
        authed = url.replace("://", f"://x:{token}@")
        return subprocess.run(
            ["git", "push", authed, refspec], cwd=clone, capture_output=True, text=True, timeout=120
        )

    try:
        with running(*push_services(platform)):
            git_service.start()
            wait_for(lambda: _answers(git.url(platform.settings) + "health"), 30, "the git service")
            clone = tmp_path / "clone"
            run_git(tmp_path, "clone", "--quiet", url.replace("://", "://x:ada-token@"), str(clone))
            bob_main = push_as("bob-token", {"notes/bob.md": "bob\n"}, "HEAD:main")
            bob_branch = push_as("bob-token", {"notes/bob2.md": "bob\n"}, "HEAD:bob-work")
            carol = push_as("carol-token", {"notes/carol.md": "carol\n"}, "HEAD:main")
            ada = push_as("ada-token", {"notes/ada.md": "ada\n"}, "HEAD:main")
    finally:
        git_service.ask_to_stop()
        git_service.wait_stopped(time.monotonic() + 10)
        hub.close()

    assert bob_main.returncode != 0, bob_main.stderr
    assert "only carol and the hub's admins (ada, ops) may push to main" in bob_main.stderr, bob_main.stderr
    assert "git push origin HEAD:bob-work" in bob_main.stderr
    assert bob_branch.returncode == 0, bob_branch.stderr
    assert carol.returncode == 0, carol.stderr
    assert ada.returncode == 0, ada.stderr
    remote = platform.settings.local_remote
    assert run_git(remote, "log", "--format=%s", "main").splitlines()[:2] == [
        "ada-token's work",
        "carol-token's work",
    ]
