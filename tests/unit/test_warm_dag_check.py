"""The DAG check from a warm process (src/mlops_ide/workspace/warm_dag_check.py): what
`mlops-ide dag check` and the clone's pre-push hook use. Real Airflow (its virtualenv), real
git, real processes; each test has a home of its own, whose servers end with it."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_ide.workspace import warm_dag_check
from tests.support.gitrepos import git
from tests.support.local_platform import wait_for
from tests.support.platform_tools import ROOT, tools_file_value
from tests.unit.test_workspace import BROKEN_DAG, GOOD_DAG, clone_of_new_remote, user_env

AIRFLOW_PYTHON = tools_file_value("MLOPS_IDE_AIRFLOW_PYTHON")


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    home.mkdir()
    yield home
    warm_dag_check.stop_all(warm_dag_check.sockets_folder(home))


def check(user_bin: Path, home: Path, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["mlops-ide", "dag", "check", *args],
        env=user_env(user_bin, HOME=str(home), **env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def servers(home: Path) -> dict[str, int]:
    """Each socket of `home`'s warm checks -> the pid of the server behind it."""
    return warm_dag_check.servers(warm_dag_check.sockets_folder(home))


def test_the_warm_check_answers_as_a_fresh_import_does(user_bin: Path, home: Path, tmp_path: Path) -> None:
    clone = clone_of_new_remote(tmp_path, "pipelines", {"dags/two.py": GOOD_DAG}, "a good DAG")
    (clone / "dags" / "broken.py").write_text(BROKEN_DAG)

    first = check(user_bin, home, clone, "dags")
    started = servers(home)
    second = check(user_bin, home, clone, "dags")
    fresh = check(user_bin, home, clone, "dags", MLOPS_IDE_WARM_CHECK="0")

    assert first.returncode == second.returncode == fresh.returncode == 1
    assert first.stdout == second.stdout == fresh.stdout
    assert fresh.stdout.startswith("dags/broken.py:4: NameError: name 'undefined_name_here' is not defined")
    assert "without the warm check" not in first.stderr + second.stderr
    assert len(started) == 1 and servers(home) == started  # the second check: the same server
    mode = warm_dag_check.sockets_folder(home).stat().st_mode & 0o777
    assert mode == 0o700


def test_the_pre_push_hook_stops_a_broken_dag_from_the_warm_check(
    user_bin: Path, home: Path, tmp_path: Path
) -> None:
    clone = clone_of_new_remote(tmp_path, "pipelines", {"dags/two.py": GOOD_DAG}, "a good DAG")
    check(user_bin, home, clone, "dags/two.py")  # starts it
    assert len(servers(home)) == 1
    remote = tmp_path / "pipelines.git"
    before = git(remote, "rev-parse", "main")
    (clone / "dags" / "broken.py").write_text(BROKEN_DAG)
    git(clone, "add", ".")
    git(clone, "commit", "--quiet", "-m", "a broken DAG")

    push = subprocess.run(
        ["git", "push", "origin", "main"],
        cwd=clone,
        env=user_env(user_bin, HOME=str(home)),
        capture_output=True,
        text=True,
    )

    assert push.returncode != 0
    assert "dags/broken.py:4: NameError" in push.stdout + push.stderr
    assert git(remote, "rev-parse", "main") == before


def test_nothing_a_check_does_reaches_the_next(user_bin: Path, home: Path, tmp_path: Path) -> None:
    """Each check is a child of its own: a DAG file that changes a module, the environment or
    the working folder leaves the server as it was; each check sees its own request's
    environment."""
    poisoner = (
        "from airflow.sdk import dag\nimport json, os\n"
        "json.dumps = None\nos.environ['LEFT_BY_A_DAG'] = '1'\nos.chdir('/')\n"
        "@dag(dag_id='poisoner', schedule=None)\ndef p():\n    pass\np()\n"
    )
    probe = (
        "from airflow.sdk import dag\nimport json, os\n"
        "seen = [json.dumps is None, os.environ.get('LEFT_BY_A_DAG'), os.environ.get('ASKED_WITH')]\n"
        "raise RuntimeError(f'seen: {seen}')\n"
    )
    clone = clone_of_new_remote(tmp_path, "pipelines", {"dags/a.py": poisoner, "dags/b.py": probe}, "DAGs")

    poisoned = check(user_bin, home, clone, "dags/a.py", ASKED_WITH="first")
    probed = check(user_bin, home, clone, "dags/b.py", ASKED_WITH="second")

    assert poisoned.returncode == 0, poisoned.stdout + poisoned.stderr
    assert "dags/b.py:4: RuntimeError: seen: [False, None, 'second']" in probed.stdout, probed.stdout
    assert len(servers(home)) == 1


def test_another_account_gets_no_check_even_through_an_open_socket(
    user_bin: Path, home: Path, tmp_path: Path
) -> None:
    """The folder is its user's alone; behind it, the server answers its own uid only."""
    clone = clone_of_new_remote(tmp_path, "pipelines", {"dags/two.py": GOOD_DAG}, "a good DAG")
    check(user_bin, home, clone, "dags/two.py")
    (name,) = servers(home)
    path = warm_dag_check.sockets_folder(home) / name
    marker = tmp_path / "imported"
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "probe.py").write_text(f"# airflow dag\nopen({str(marker)!r}, 'w').close()\n")
    for opened in (
        home,
        home / ".cache",
        home / ".cache" / "mlops-ide",
        path.parent,
        tmp_path,
        tmp_path / "dags",
    ):
        opened.chmod(0o755)
    path.chmod(0o777)  # as if the user opened it: still theirs alone
    asked = json.dumps({"dags": str(tmp_path / "dags"), "args": ["--problems"], "env": {}})
    client = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
        "s.sendall(sys.argv[2].encode() + b'\\n')\n"
        "try:\n    print(repr(s.recv(100)))\n"
        "except ConnectionResetError:\n    print('reset')\n"
    )

    other = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            client,
            name,
            asked,
        ],
        cwd=path.parent,  # the socket by its name: the whole path is too long for an address
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert other.returncode == 0, other.stderr
    assert other.stdout.strip() in ("b''", "reset")  # hung up on, unanswered
    assert not marker.exists()
    path.parent.chmod(0o700)
    own = check(user_bin, home, clone, "dags/two.py")
    assert own.returncode == 0 and "without the warm check" not in own.stderr  # its user's answered
    assert list(servers(home)) == [name]


def test_a_folder_another_account_could_write_to_is_not_used(
    user_bin: Path, home: Path, tmp_path: Path
) -> None:
    clone = clone_of_new_remote(tmp_path, "pipelines", {"dags/two.py": GOOD_DAG}, "a good DAG")
    folder = warm_dag_check.sockets_folder(home)
    folder.mkdir(parents=True)
    folder.chmod(0o777)  # anyone could plant a socket there that answers "all good"

    checked = check(user_bin, home, clone, "dags")

    assert checked.returncode == 0 and "1 DAG file(s), 0 that would not load" in checked.stdout
    assert "checking without the warm check" in checked.stderr and "0700" in checked.stderr
    assert list(folder.iterdir()) == []


def test_a_push_given_up_ends_its_check_and_the_server_answers_the_next(
    user_bin: Path, home: Path, tmp_path: Path
) -> None:
    marker = "slow-dag-check-marker"
    slow = f"from airflow.sdk import dag\nimport time\n# {marker}\ntime.sleep(120)\n"
    clone = clone_of_new_remote(
        tmp_path, "pipelines", {"dags/two.py": GOOD_DAG, "dags/slow.py": slow}, "DAGs"
    )
    check(user_bin, home, clone, "dags/two.py")
    (server,) = servers(home).values()

    given_up = subprocess.Popen(
        ["mlops-ide", "dag", "check", "dags/slow.py"], env=user_env(user_bin, HOME=str(home)), cwd=clone
    )

    def checking() -> list[int]:
        return [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc"))) if child_of(pid, server)]

    assert wait_for(checking, 60, "the server's child checking slow.py") is not None
    given_up.send_signal(signal.SIGINT)
    given_up.wait(30)
    assert wait_for(lambda: not checking(), 10, "the check ended with its client") is not None
    assert check(user_bin, home, clone, "dags/two.py").returncode == 0
    assert list(servers(home).values()) == [server]


def child_of(pid: int, parent: int) -> bool:
    try:
        return int(warm_dag_check.proc_stat(pid)[1]) == parent
    except OSError:
        return False


def test_a_new_airflow_configuration_replaces_the_server(user_bin: Path, home: Path, tmp_path: Path) -> None:
    clone = clone_of_new_remote(tmp_path, "pipelines", {"dags/two.py": GOOD_DAG}, "a good DAG")
    check(user_bin, home, clone, "dags/two.py")
    (old,) = servers(home).values()
    old_server = f"{old}:{warm_dag_check.proc_stat(old)[19]}"

    check(user_bin, home, clone, "dags/two.py", AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="45")

    (new,) = servers(home).values()
    assert new != old
    assert wait_for(lambda: not warm_dag_check.alive(old_server), 10, "the old server to end") is not None


@pytest.mark.parametrize("ends", ["idle", "lifeline"])
def test_the_server_ends_when_idle_or_with_its_lifeline(tmp_path: Path, ends: str) -> None:
    folder = tmp_path / "sockets"
    folder.mkdir(mode=0o700)
    path = folder / "check.sock"
    life = subprocess.Popen(["sleep", "300"])
    lifeline = f"{life.pid}:{warm_dag_check.proc_stat(life.pid)[19]}"
    launcher = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r}); "
        "from mlops_ide.workspace.warm_dag_check import main; sys.exit(main())"
    )
    idle = "2" if ends == "idle" else "600"
    server = subprocess.Popen(
        [AIRFLOW_PYTHON, "-P", "-c", launcher, str(path), "--idle", idle, "--lifeline", lifeline]
    )
    try:
        assert wait_for(path.exists, 60, "the server's socket") is not None
        started = time.monotonic()
        if ends == "lifeline":
            life.kill()
            life.wait()
        server.wait(30)
        assert time.monotonic() - started < 10
        assert server.returncode == 0
        assert not path.exists()
    finally:
        life.kill()
        server.kill()


def ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        chain.append(pid)
        pid = int(warm_dag_check.proc_stat(pid)[1])
    return chain


def test_the_lifeline_is_the_outermost_user_server_among_the_ancestors() -> None:
    """A terminal's chain of processes: a server (JUPYTERHUB_SERVICE_PREFIX set at its start),
    a shell below it, the check below that; then the same chain with no server in it."""
    probe = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'src')!r}); "
        "from mlops_ide.workspace import warm_dag_check; print(warm_dag_check.lifeline())"
    )
    inner = f"{shlex.quote(sys.executable)} -c {shlex.quote(probe)}; true"  # `; true`: no exec, a chain
    chain = ["sh", "-c", 'echo "$$"; sh -c "$0"; true', inner]
    env = {key: value for key, value in os.environ.items() if key != "JUPYTERHUB_SERVICE_PREFIX"}

    as_server = subprocess.run(
        ["env", "JUPYTERHUB_SERVICE_PREFIX=/user/alice/", *chain],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    outside = subprocess.run(chain, env=env, capture_output=True, text=True, check=True)

    server, line = as_server.stdout.split()
    assert line.split(":")[0] == server
    shell, line = outside.stdout.split()
    chosen = int(line.split(":")[0])
    assert chosen != int(shell) and chosen in ancestors(os.getpid())  # the outermost of root's
