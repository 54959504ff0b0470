"""A teammate's push must not run code in another user's server by itself: the startup hook
holds back incoming files Python runs as it starts (startup/held_back.py, docs/startup-hook.md
case 17). Checked end to end: alice's server starts as the start wrapper starts it, then
her terminal's `python` (the pipeline's, with the clone's src/ on PYTHONPATH) runs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from mlops_ide.workspace import user_tools
from startup import start
from startup.held_back import PATH_FOLDERS
from tests.support.gitrepos import Remote, git

# Ours, the test runner's: startup.start drops PYTHONPATH; Airflow's settings are not a server's.
NOT_THE_SERVERS = ("PYTHONPATH", "AIRFLOW")


@pytest.fixture
def start_server(remote: Remote, home: Path, user_bin: Path, monkeypatch: pytest.MonkeyPatch):
    """Start alice's server: the sync and the environment startup.start gives the server (and
    so its terminals): the spawner's, without PYTHONPATH, the user's commands first on PATH."""
    monkeypatch.setenv("MLOPS_IDE_REPO_URL", remote.url)

    def started() -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("PYTHONPATH", "AIRFLOW"))
        }
        env["PATH"] = f"{user_bin}:/usr/bin:/bin"
        env.update(start.prepare(home))
        return env

    return started


def run_python(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """What alice's terminal runs for `python` (also VS Code's interpreter and the kernel's)."""
    return subprocess.run(
        ["python", "-c", "print('hello')"], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def leaves_a_mark(marker: Path) -> str:
    """Code that creates `marker` even where Python has not set up `open` yet (encodings)."""
    return f"import posix\nposix.close(posix.open({str(marker)!r}, posix.O_CREAT | posix.O_WRONLY, 0o600))\n"


@pytest.mark.parametrize("path", ["src/sitecustomize.py", "src/encodings/__init__.py"])
def test_a_teammates_startup_code_does_not_run_in_your_python(
    remote: Remote, home: Path, tmp_path: Path, start_server, path: str
) -> None:
    """bob pushes code Python imports at every start; alice's next server start fetches it but
    her `python` does not run it. When she takes it by hand, it is her choice, and it runs."""
    env = start_server()  # alice's first start: the clone
    clone = Path(env["MLOPS_IDE_WORKSPACE"])
    marker = tmp_path / "ran-as-alice"
    remote.commit({path: leaves_a_mark(marker), "dags/train.py": "print('train v2')\n"}, "bob's push")

    env = start_server()
    result = run_python(env, clone)

    assert not marker.exists(), f"{path} ran when alice's python started"
    assert (result.returncode, result.stdout) == (0, "hello\n"), result.stderr[-2000:]
    assert not (clone / path).exists()
    assert "review_python_startup" in (home / "sync-status.md").read_text()
    # alice reads it and takes it herself, as the status file says
    git(clone, "merge", "--quiet", "--ff-only", "origin/main")
    run_python(env, clone)
    assert marker.exists()  # so the check above could see it run


def test_a_teammates_change_to_the_teams_sitecustomize_waits_too(
    remote: Remote, home: Path, tmp_path: Path, start_server
) -> None:
    harmless = "import warnings\nwarnings.simplefilter('ignore', DeprecationWarning)\n"
    remote.commit({"src/sitecustomize.py": harmless}, "the team's sitecustomize")
    env = start_server()
    clone = Path(env["MLOPS_IDE_WORKSPACE"])
    marker = tmp_path / "ran-as-alice"
    remote.commit({"src/sitecustomize.py": harmless + leaves_a_mark(marker)}, "bob's change")

    env = start_server()
    result = run_python(env, clone)

    assert not marker.exists(), "bob's change ran when alice's python started"
    assert (result.returncode, result.stdout) == (0, "hello\n"), result.stderr[-2000:]
    assert (clone / "src" / "sitecustomize.py").read_text() == harmless


def test_a_teammates_change_to_src_still_reaches_your_python(
    remote: Remote, home: Path, start_server
) -> None:
    env = start_server()
    clone = Path(env["MLOPS_IDE_WORKSPACE"])
    remote.commit({"src/skin_cancer_probe.py": "WHO = 'bob'\n", "dags/train.py": "print('v2')\n"}, "code")

    env = start_server()

    assert git(clone, "rev-parse", "HEAD") == remote.head()
    result = subprocess.run(
        ["python", "-c", "import skin_cancer_probe; print(skin_cancer_probe.WHO)"],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stdout) == (0, "bob\n"), result.stderr[-2000:]


def test_the_hook_watches_the_folders_python_puts_on_pythonpath() -> None:
    """held_back.PATH_FOLDERS must name exactly the clone's folders user_tools' `python` puts
    on PYTHONPATH, or a module there could replace a standard one unseen."""
    on_path = re.findall(r"\$MLOPS_IDE_WORKSPACE/([^:$}\"]+)", user_tools.PIPELINE_ENV)
    assert on_path == list(PATH_FOLDERS)
