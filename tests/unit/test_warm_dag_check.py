"""The DAG check from a warm process (src/mlops_ide/workspace/warm_dag_check.py): what
`mlops-ide dag check` and the clone's pre-push hook use. Real Airflow (its virtualenv), real
git, real processes; each test has a home of its own, whose servers end with it."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
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
    folder = warm_dag_check.sockets_folder(home)
    if folder.is_dir():
        folder.chmod(0o700)  # as a test that opened it may have left it
    warm_dag_check.stop_all(folder)


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


def warm_clone(user_bin: Path, home: Path, tmp_path: Path) -> tuple[Path, str]:
    """A clone with a good DAG, checked once: (the clone, the socket name of its warm check)."""
    clone = good_clone(tmp_path)
    check(user_bin, home, clone, "dags/two.py")
    (name,) = servers(home)
    return clone, name


def good_clone(tmp_path: Path) -> Path:
    return clone_of_new_remote(tmp_path, "pipelines", {"dags/two.py": GOOD_DAG}, "a good DAG")


def test_the_warm_check_answers_as_a_fresh_import_does(user_bin: Path, home: Path, tmp_path: Path) -> None:
    clone = good_clone(tmp_path)
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
    clone, _name = warm_clone(user_bin, home, tmp_path)
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
    clone, name = warm_clone(user_bin, home, tmp_path)
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
        "try:\n    s.sendall(sys.argv[2].encode() + b'\\n')\n    print(repr(s.recv(100)))\n"
        "except (BrokenPipeError, ConnectionResetError):  # closed on it before or after it spoke\n"
        "    print('reset')\n"
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
    clone = good_clone(tmp_path)
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
    clone, name = warm_clone(user_bin, home, tmp_path)
    old = servers(home)[name]
    old_server = f"{old}:{warm_dag_check.proc_stat(old)[19]}"

    check(user_bin, home, clone, "dags/two.py", AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT="45")

    (new,) = servers(home).values()
    assert new != old
    assert wait_for(lambda: not warm_dag_check.alive(old_server), 10, "the old server to end") is not None


STARTER = """
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("warm_dag_check", sys.argv[1])
warm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(warm)
with warm.private_folder(warm.Path(sys.argv[2])) as fd:
    warm.start(fd, "check.sock", dict(os.environ), idle=float(sys.argv[3]), life=sys.argv[4]).close()
print(warm.servers(warm.Path(sys.argv[2]))["check.sock"], flush=True)
"""


@pytest.mark.parametrize("ends", ["idle", "lifeline"])
def test_the_server_ends_when_idle_or_with_its_lifeline(tmp_path: Path, ends: str) -> None:
    folder = tmp_path / "sockets"
    life = subprocess.Popen(["sleep", "300"])
    lifeline = f"{life.pid}:{warm_dag_check.proc_stat(life.pid)[19]}"
    idle = "2" if ends == "idle" else "600"
    try:
        started = subprocess.run(
            [AIRFLOW_PYTHON, "-c", STARTER, str(warm_dag_check.THIS), str(folder), idle, lifeline],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        server = int(started.stdout)
        server_line = f"{server}:{warm_dag_check.proc_stat(server)[19]}"
        began = time.monotonic()
        if ends == "lifeline":
            life.kill()
            life.wait()
        assert wait_for(lambda: not warm_dag_check.alive(server_line), 30, "the server to end") is not None
        assert time.monotonic() - began < 10
        assert not (folder / "check.sock").exists()
    finally:
        life.kill()


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
    # run as another account by root (no ancestor of its own): the check itself
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    alone = subprocess.run(
        [*as_nobody, "sh", "-c", 'echo "$$"; exec "$0" -c "$1"', sys.executable, probe],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        check=True,
    )
    itself, line = alone.stdout.split()
    assert line.split(":")[0] == itself


def test_a_silent_connection_holds_a_check_back_a_few_seconds_at_most(
    user_bin: Path, home: Path, tmp_path: Path
) -> None:
    clone, name = warm_clone(user_bin, home, tmp_path)

    with socket.socket(socket.AF_UNIX) as silent:  # connects, says nothing, stays
        silent.connect(name_in(home, name))
        began = time.monotonic()
        checked = check(user_bin, home, clone, "dags/two.py")
        waited = time.monotonic() - began

    assert checked.returncode == 0 and "without the warm check" not in checked.stderr, checked.stderr
    assert waited < warm_dag_check.REQUEST_SECONDS + 5


def name_in(home: Path, name: str) -> str:
    """A socket's address in `home`'s folder by a short path (the whole one may be too long)."""
    link = Path(tempfile.mkdtemp(prefix="s-", dir="/tmp")) / "f"
    link.symlink_to(warm_dag_check.sockets_folder(home))
    return str(link / name)


def test_what_a_check_starts_ends_with_it_even_double_forked(
    user_bin: Path, home: Path, tmp_path: Path
) -> None:
    marker = f"left-by-a-dag-{os.getpid()}"
    daemon = (
        "from airflow.sdk import dag\nimport os, time\n"
        "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
        f"        os.execvp('sh', ['sh', '-c', 'sleep 300; : {marker}'])\n    os._exit(0)\n"
        "time.sleep(0.5)\n@dag(dag_id='daemon', schedule=None)\ndef d():\n    pass\nd()\n"
    )
    clone = clone_of_new_remote(
        tmp_path, "pipelines", {"dags/daemon.py": daemon}, "a DAG that leaves a process"
    )

    checked = check(user_bin, home, clone, "dags/daemon.py")

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert wait_for(lambda: not running(marker), 5, "the process the DAG left to end") is not None
    assert len(servers(home)) == 1


def running(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
    return found


def test_the_server_holds_none_of_the_environment_it_was_started_from(
    user_bin: Path, home: Path, tmp_path: Path
) -> None:
    """Started from one terminal, it answers another: the DAG code sees this request's
    environment only, and its parent (the server) holds no other."""
    probe = (
        "from airflow.sdk import dag\nimport os\n"
        "parent = open(f'/proc/{os.getppid()}/environ', 'rb').read()\n"
        "seen = [b'DB_URL' in parent, os.environ.get('DB_URL')]\n"
        "raise RuntimeError(f'seen: {seen}')\n"
    )
    clone = clone_of_new_remote(tmp_path, "pipelines", {"dags/probe.py": probe}, "a probe")

    first = check(user_bin, home, clone, "dags/probe.py", DB_URL="postgres://ml:hunter2@db/ml")
    second = check(user_bin, home, clone, "dags/probe.py")

    assert "RuntimeError: seen: [False, 'postgres://ml:hunter2@db/ml']" in first.stdout, first.stdout
    assert "RuntimeError: seen: [False, None]" in second.stdout, second.stdout
    assert len(servers(home)) == 1


def test_checks_at_once_start_one_server(user_bin: Path, home: Path, tmp_path: Path) -> None:
    clone = good_clone(tmp_path)

    at_once = [
        subprocess.Popen(
            ["mlops-ide", "dag", "check", "dags/two.py"],
            env=user_env(user_bin, HOME=str(home)),
            cwd=clone,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    answers = [process.communicate(timeout=300) for process in at_once]

    assert all(process.returncode == 0 for process in at_once), answers
    assert all("without the warm check" not in err for _out, err in answers), answers
    started_here = [pid for pid in running("warm_dag_check") if home_of(pid) == str(home)]
    assert len(started_here) == 1 and list(servers(home).values()) == started_here


def home_of(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if item.startswith(b"HOME="):
                return item[5:].decode()
    return None


@pytest.mark.parametrize("warm", ["1", "0"])
def test_a_dag_file_that_ends_the_check_fails_it(
    user_bin: Path, home: Path, tmp_path: Path, warm: str
) -> None:
    ender = "from airflow.sdk import dag\nimport os\nos._exit(0)\n"
    clone = clone_of_new_remote(tmp_path, "pipelines", {"dags/ender.py": ender}, "a DAG that ends the check")

    checked = check(user_bin, home, clone, "dags/ender.py", MLOPS_IDE_WARM_CHECK=warm)

    assert checked.returncode == 1
    assert "the DAG check ended without its summary" in checked.stdout, checked.stdout


def test_a_dag_file_sees_no_platform_code_as_with_a_fresh_import(
    user_bin: Path, home: Path, tmp_path: Path
) -> None:
    probe = "from airflow.sdk import dag\nimport mlops_ide\n"
    clone = clone_of_new_remote(tmp_path, "pipelines", {"dags/probe.py": probe}, "a probe")

    warm = check(user_bin, home, clone, "dags/probe.py")
    fresh = check(user_bin, home, clone, "dags/probe.py", MLOPS_IDE_WARM_CHECK="0")

    assert "dags/probe.py:2: ModuleNotFoundError: No module named 'mlops_ide'" in fresh.stdout, fresh.stdout
    assert warm.stdout == fresh.stdout and warm.returncode == fresh.returncode == 1


def test_a_check_killed_while_it_starts_the_server_holds_nothing_back(
    user_bin: Path, home: Path, tmp_path: Path
) -> None:
    """Killed (not interrupted: no clean-up runs) while its server imports Airflow: the folder's
    lock was the client's alone, so the next check goes on at once."""
    clone = good_clone(tmp_path)
    starting = subprocess.Popen(
        ["mlops-ide", "dag", "check", "dags/two.py"], env=user_env(user_bin, HOME=str(home)), cwd=clone
    )
    wait_for(lambda: [pid for pid in running("warm_dag_check") if home_of(pid) == str(home)], 60, "a server")
    starting.kill()
    starting.wait()

    began = time.monotonic()
    checked = check(user_bin, home, clone, "dags/two.py")

    assert checked.returncode == 0 and "without the warm check" not in checked.stderr, checked.stderr
    assert time.monotonic() - began < 20
