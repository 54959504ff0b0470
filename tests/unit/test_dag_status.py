"""`mlops-ide dag status`: the status file read with suspicion (missing, corrupt, huge, a
field wrong: exit 2 with what to do), and the user's clone compared with what Airflow runs
(exit 0 live, 1 a DAG file does not load, 3 not yet) on real repositories."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from mlops_ide.portable import push_status
from mlops_ide.workspace import dag_commands
from tests.support.gitrepos import Remote, git, user_commit


@pytest.fixture
def clone(tmp_path: Path, remote: Remote) -> Path:
    folder = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", remote.url, str(folder))
    git(folder, "config", "user.name", "Alice")
    git(folder, "config", "user.email", "alice@example.com")
    return folder


@pytest.fixture
def status_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "push-status" / "status.json"
    path.parent.mkdir()
    monkeypatch.setenv(push_status.ENV, str(path))
    return path


def verdict(path: Path, commit: str, state: str, *lines: str) -> None:
    push_status.write(path, push_status.make("main", commit, state, list(lines)))


def run(clone: Path, *argv: str, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    here = Path.cwd()
    os.chdir(clone)
    try:
        code = dag_commands.main(["dag", "status", *argv])
    finally:
        os.chdir(here)
    return code, capsys.readouterr().out


def test_your_push_live_in_airflow_exits_0(clone: Path, status_file: Path, capsys) -> None:
    pushed = git(clone, "rev-parse", "origin/main").strip()
    verdict(status_file, pushed, "live", "live: daily_report", f"Airflow runs {pushed[:12]} (in 1.1 s)")

    code, out = run(clone, capsys=capsys)

    assert code == 0, out
    assert f"Airflow runs main at {pushed[:12]}" in out and "  live: daily_report" in out
    assert f"your push {pushed[:12]} is live" in out


def test_a_dag_file_that_does_not_load_exits_1_naming_file_and_line(
    clone: Path, status_file: Path, capsys
) -> None:
    pushed = git(clone, "rev-parse", "origin/main").strip()
    verdict(
        status_file, pushed, "broken", "dags/x.py:2: import error: ModuleNotFoundError: No module named 'y'"
    )

    code, out = run(clone, capsys=capsys)

    assert code == 1 and "dags/x.py:2: import error: ModuleNotFoundError" in out, out


def test_a_push_airflow_does_not_run_yet_exits_3_after_waiting(
    clone: Path, remote: Remote, status_file: Path, capsys
) -> None:
    before = git(clone, "rev-parse", "origin/main").strip()
    verdict(status_file, before, "live", "live: daily_report")
    user_commit(clone, {"dags/new.py": "# new\n"}, "new")
    git(clone, "push", "--quiet", "origin", "main")

    code, out = run(clone, "--wait", "0.6", capsys=capsys)

    assert code == 3, out
    assert f"your push {git(clone, 'rev-parse', 'HEAD').strip()[:12]} is not in Airflow yet" in out
    assert "waited 0.6 s" in out


def test_a_newer_commit_in_airflow_holds_your_push(
    clone: Path, remote: Remote, status_file: Path, capsys
) -> None:
    mine = git(clone, "rev-parse", "origin/main").strip()
    newer = remote.commit({"notes.md": "a teammate's\n"}, "teammate")
    git(clone, "fetch", "--quiet")
    git(clone, "reset", "--quiet", "--hard", mine)
    git(clone, "update-ref", "refs/remotes/origin/main", mine)  # her clone knows her push only
    verdict(status_file, newer, "live", "next runs use x")

    code, out = run(clone, capsys=capsys)

    assert code == 0 and f"is in Airflow's newer {newer[:12]}" in out, out


def test_a_verdict_still_parsing_is_not_yet(clone: Path, status_file: Path, capsys) -> None:
    pushed = git(clone, "rev-parse", "origin/main").strip()
    verdict(status_file, pushed, "pending", "still parsing after 10.0 s")

    code, out = run(clone, capsys=capsys)

    assert code == 3 and "still being parsed" in out, out


def test_an_unpushed_head_is_named(clone: Path, status_file: Path, capsys) -> None:
    pushed = git(clone, "rev-parse", "origin/main").strip()
    verdict(status_file, pushed, "live", "live: x")
    head = user_commit(clone, {"dags/local.py": "# not pushed\n"}, "local")

    code, out = run(clone, capsys=capsys)

    assert code == 0 and f"your HEAD {head[:12]} is not pushed" in out, out


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"{not json", "is not JSON"),
        (
            b'{"commit": "1a2b", "state": "live", "branch": "main", "when": 1, "lines": []}',
            "not a push status",
        ),
        (
            b'{"commit": "' + b"a" * 40 + b'", "state": "live", "branch": "main", "when": 1, "lines": [3]}',
            "a field",
        ),
        (b"[]", "not a push status"),
        (
            b'{"lines": ["' + b"x" * (push_status.MAX_BYTES + 10) + b'"]}',
            f"is over {push_status.MAX_BYTES} bytes",
        ),
    ],
    ids=["corrupt", "short-commit", "not-text-lines", "a-list", "huge"],
)
def test_a_corrupt_or_huge_status_file_exits_2_saying_so(
    clone: Path, status_file: Path, capsys, content: bytes, says: str
) -> None:
    status_file.write_bytes(content)

    code, out = run(clone, "--wait", "0.3", capsys=capsys)

    assert code == 2 and says in out and "ask the operator" in out, out
    assert "Traceback" not in out


def test_no_status_file_yet_exits_2_saying_why(clone: Path, status_file: Path, capsys) -> None:
    code, out = run(clone, capsys=capsys)

    assert code == 2 and "has not given a verdict on any push yet" in out, out


def test_no_clone_exits_2_saying_where_to_go(tmp_path: Path, status_file: Path, monkeypatch, capsys) -> None:
    outside = tmp_path / "not-a-clone"
    outside.mkdir()
    monkeypatch.delenv("MLOPS_IDE_WORKSPACE", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))

    code, out = run(outside, capsys=capsys)

    assert code == 2 and "is not in a git clone: cd into your clone" in out, out


def test_no_status_file_setting_exits_2(clone: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv(push_status.ENV, raising=False)

    code, out = run(clone, capsys=capsys)

    assert code == 2 and f"{push_status.ENV} is not set" in out, out


def test_the_status_file_is_written_whole_and_readable_by_every_account(status_file: Path) -> None:
    verdict(status_file, "a" * 40, "live", "live: x")

    assert stat.S_IMODE(status_file.stat().st_mode) == 0o644
    assert json.loads(status_file.read_text())["lines"] == ["live: x"]
    assert [p.name for p in status_file.parent.iterdir()] == ["status.json"]  # no partial file left
