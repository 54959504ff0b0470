"""The data scientist's workspace, without the platform around it: the pipeline repository
the remote is seeded with, the commands on the user's PATH (the pipeline's `python`,
`mlops-ide dag check|test`), and the pre-push hook. Real git, real Airflow (its
virtualenv), real pipeline virtualenv."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from mlops_ide.portable import pipeline_repo
from mlops_ide.workspace import user_tools
from startup import git_hooks
from tests.support.gitrepos import git
from tests.support.platform_tools import ROOT
from tests.unit.conftest import user_home

PLATFORM_ONLY = ("jupyterhub_config.py", "deploy", "images", "scripts", "startup", "src/mlops_ide", "bench")
GOOD_DAG = """\
from airflow.sdk import dag, task


@dag(schedule=None)
def two_tasks():
    @task
    def first():
        print("hello from first")
        return 1

    @task
    def second(x):
        if x != 1:
            raise ValueError("boom")
        print("second got", x)

    second(first())


two_tasks()
"""
BROKEN_DAG = "from airflow.sdk import dag\n\n\nundefined_name_here\n"


def committed_paths(repository: Path, commit: str) -> list[str]:
    return git(repository, "ls-tree", "-r", "--name-only", commit).splitlines()


def test_the_pipeline_repository_holds_the_pipeline_and_none_of_the_platform() -> None:
    paths = committed_paths(ROOT, pipeline_repo.commit(ROOT))

    for expected in (
        "dags/cnn_skin_cancer_workflow.py",
        "dags/platform_smoke_test.py",  # the DAG the remote's hook names at each push
        "src/skin_cancer/tasks.py",
        "tests/test_training.py",
        "tests/servers.py",  # the tests' own helpers: they run without the platform
        "requirements/pipeline.txt",
        "Dockerfile",
        "ci/dag_check.py",
        ".github/workflows/ci.yml",
        ".vscode/tasks.json",
        "pyproject.toml",
        "README.md",
    ):
        assert expected in paths
    leaked = [path for path in paths if path.startswith(PLATFORM_ONLY)]
    assert leaked == []
    assert "mlops-ide dag check" in (ROOT / "pipeline-repo" / "README.md").read_text()


def test_the_pipeline_tests_import_nothing_of_the_platform() -> None:
    """They run in the pipeline repository alone (its CI, `python -m pytest` in a clone)."""
    for path in (ROOT / "tests" / "pipeline").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import) (tests|mlops_ide|startup)\b", text, re.M), path.name


def test_a_checkout_without_the_pipeline_files_committed_is_refused_with_what_to_do(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    git(checkout, "init", "--quiet")
    (checkout / "dags").mkdir()
    (checkout / "dags" / "a.py").write_text("# a DAG\n")
    git(checkout, "add", ".")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "-m", "only dags")

    with pytest.raises(pipeline_repo.PipelineRepoError, match=r"is not in .* commit it first"):
        pipeline_repo.commit(checkout)


def test_a_working_copy_is_written_only_into_a_new_folder(tmp_path: Path) -> None:
    fresh = tmp_path / "team-pipelines"
    seed = pipeline_repo.write_working_copy(ROOT, fresh)
    assert git(fresh, "rev-parse", "HEAD") == seed
    assert git(fresh, "status", "--porcelain") == ""
    assert (fresh / "dags" / "cnn_skin_cancer_workflow.py").exists()

    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.md").write_text("mine")
    with pytest.raises(pipeline_repo.PipelineRepoError, match="not empty"):
        pipeline_repo.write_working_copy(ROOT, taken)
    assert [p.name for p in taken.iterdir()] == ["notes.md"]


def user_env(user_bin: Path, **extra: str) -> dict[str, str]:
    """A user server's environment: no PYTHONPATH, the user's commands first on PATH, a home of its own."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHONPATH", "AIRFLOW"))}
    env["PATH"] = f"{user_bin}:/usr/bin:/bin"
    env["HOME"] = str(user_home(user_bin))
    env.update(extra)
    return env


def test_python_is_the_pipelines_with_the_working_copys_src_importable(
    user_bin: Path, tmp_path: Path
) -> None:
    workspace = tmp_path / "pipelines"
    (workspace / "src" / "skin_cancer").mkdir(parents=True)
    (workspace / "src" / "skin_cancer" / "__init__.py").write_text("EDITED = 'in the working copy'\n")
    probe = "import keras, mlflow, numpy, skin_cancer; print(skin_cancer.EDITED, keras.backend.backend())"

    result = subprocess.run(
        ["python", "-c", probe],
        env=user_env(user_bin, MLOPS_IDE_WORKSPACE=str(workspace)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["in", "the", "working", "copy", "torch"]
    kernel = user_tools.kernel_spec(user_bin / "python")
    assert f'"{user_bin / "python"}"' in kernel and "ipykernel_launcher" in kernel


def clone_of_new_remote(tmp_path: Path, name: str, files: dict[str, str], message: str) -> Path:
    """A clone of a new bare remote (`name`.git) holding `files` in one pushed commit, the
    pre-push hook installed."""
    remote = tmp_path / f"{name}.git"
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch", "main", str(remote)], check=True)
    clone = tmp_path / name
    subprocess.run(["git", "clone", "--quiet", str(remote), str(clone)], check=True, capture_output=True)
    git(clone, "config", "user.name", "Alice")
    git(clone, "config", "user.email", "alice@example.org")
    for path, text in files.items():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_text(text)
    git(clone, "add", ".")
    git(clone, "commit", "--quiet", "-m", message)
    git(clone, "push", "--quiet", "origin", "main")
    assert git_hooks.install_pre_push(clone)
    return clone


@pytest.fixture
def working_copy(tmp_path: Path) -> Path:
    """A clone of a pipeline remote (pipelines.git) with a good DAG pushed, the pre-push hook installed."""
    return clone_of_new_remote(tmp_path, "pipelines", {"dags/two.py": GOOD_DAG}, "a good DAG")


def mlops_ide(user_bin: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["mlops-ide", *args], env=user_env(user_bin), cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_dag_check_names_the_changed_file_and_line_that_would_not_load(
    user_bin: Path, working_copy: Path
) -> None:
    clean = mlops_ide(user_bin, working_copy, "dag", "check")
    assert clean.returncode == 0 and "No DAG file changed" in clean.stdout

    (working_copy / "dags" / "broken.py").write_text(BROKEN_DAG)  # untracked: still checked
    broken = mlops_ide(user_bin, working_copy / "dags", "dag", "check")

    assert broken.returncode == 1
    assert (
        broken.stdout.splitlines()[0]
        == "dags/broken.py:4: NameError: name 'undefined_name_here' is not defined"
    )
    assert "two.py" not in broken.stdout  # unchanged files are not checked again
    named = mlops_ide(user_bin, working_copy, "dag", "check", "dags/two.py")
    assert named.returncode == 0, named.stdout + named.stderr
    assert "1 DAG file(s), 0 that would not load" in named.stdout


def test_dag_code_the_check_runs_sees_none_of_the_servers_tokens(user_bin: Path, working_copy: Path) -> None:
    probe = (
        "from airflow.sdk import dag\nimport os\n"
        'seen = sorted(k for k in os.environ if "TOKEN" in k or k.startswith(("JUPYTERHUB", "MLFLOW")))\n'
        'raise RuntimeError("seen: " + ",".join(seen))\n'
    )
    (working_copy / "dags" / "probe.py").write_text(probe)
    server = {
        "JUPYTERHUB_API_TOKEN": "hub-token",
        "MLOPS_IDE_GIT_TOKEN": "git-token",
        "MLFLOW_TRACKING_TOKEN": "mlflow-token",
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:1/services/mlflow",
    }

    checked = subprocess.run(
        ["mlops-ide", "dag", "check", "dags/probe.py"],
        env=user_env(user_bin, **server),
        cwd=working_copy,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert "dags/probe.py:4: RuntimeError: seen: MLFLOW_TRACKING_URI\n" in checked.stdout, checked.stdout


def test_dag_check_refuses_what_is_not_a_dag_file_with_what_to_do(user_bin: Path, working_copy: Path) -> None:
    outside = mlops_ide(user_bin, working_copy, "dag", "check", "README.md")
    assert outside.returncode == 2 and "is not a DAG file" in outside.stderr

    elsewhere = mlops_ide(user_bin, working_copy.parent, "dag", "check")
    assert elsewhere.returncode == 2 and "cd into your clone" in elsewhere.stderr


def test_the_pre_push_hook_stops_a_broken_dag_and_no_verify_skips_it(
    user_bin: Path, working_copy: Path
) -> None:
    remote = working_copy.parent / "pipelines.git"
    before = git(remote, "rev-parse", "main")
    (working_copy / "dags" / "broken.py").write_text(BROKEN_DAG)
    git(working_copy, "add", ".")
    git(working_copy, "commit", "--quiet", "-m", "a broken DAG")
    (working_copy / "dags" / "broken.py").write_text(GOOD_DAG.replace("two_tasks", "fixed"))  # not committed

    push = subprocess.run(
        ["git", "push", "origin", "main"],
        cwd=working_copy,
        env=user_env(user_bin),
        capture_output=True,
        text=True,
    )

    assert push.returncode != 0  # the commit is checked as committed, not the working copy
    assert "dags/broken.py:4: NameError" in push.stdout + push.stderr
    assert "--no-verify" in push.stderr
    assert git(remote, "rev-parse", "main") == before
    skipped = subprocess.run(
        ["git", "push", "--no-verify", "origin", "main"],
        cwd=working_copy,
        env=user_env(user_bin),
        capture_output=True,
    )
    assert skipped.returncode == 0
    assert git(remote, "rev-parse", "main") == git(working_copy, "rev-parse", "HEAD")


def team_clone(tmp_path: Path, files: dict[str, str]) -> Path:
    """A clone of a team's repository of its own shape (no dags/), the pre-push hook installed."""
    return clone_of_new_remote(tmp_path, "team", files, "the team's repository")


def test_dag_commands_follow_the_dag_folder_setting(user_bin: Path, tmp_path: Path) -> None:
    clone = team_clone(tmp_path, {"cnn_skin_cancer/two.py": GOOD_DAG, "src/model.py": "LAYERS = 3\n"})
    env = user_env(user_bin, MLOPS_IDE_DAGS_FOLDER="cnn_skin_cancer")
    (clone / "cnn_skin_cancer" / "nested").mkdir()
    (clone / "cnn_skin_cancer" / "nested" / "broken.py").write_text(BROKEN_DAG)

    def run(*args: str, cwd: Path = clone) -> subprocess.CompletedProcess:
        return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)

    changed = run("mlops-ide", "dag", "check")
    every = run("mlops-ide", "dag", "check", "cnn_skin_cancer")
    outside = run("mlops-ide", "dag", "check", "src/model.py")
    git(clone, "add", ".")
    git(clone, "commit", "--quiet", "-m", "broken, in a sub-folder")
    pushed = run("git", "push", "origin", "main")

    assert changed.returncode == 1, changed.stdout + changed.stderr
    assert changed.stdout.startswith("cnn_skin_cancer/nested/broken.py:4: NameError"), changed.stdout
    assert every.returncode == 1 and "2 DAG file(s), 1 that would not load" in every.stdout, every.stdout
    assert outside.returncode == 2 and "is not a DAG file" in outside.stderr
    assert pushed.returncode != 0 and "cnn_skin_cancer/nested/broken.py:4: NameError" in pushed.stdout


def test_a_push_of_the_tracked_branch_to_a_remote_outside_says_where_to_see_airflows_verdict(
    user_bin: Path, working_copy: Path
) -> None:
    remote = str(working_copy.parent / "pipelines.git")  # the team's repository, as the platform tracks it
    env = user_env(user_bin, MLOPS_IDE_REPO_URL=remote, MLOPS_IDE_REPO_BRANCH="main")
    (working_copy / "dags" / "three.py").write_text(GOOD_DAG.replace("two_tasks", "three_tasks"))
    git(working_copy, "add", ".")
    git(working_copy, "commit", "--quiet", "-m", "a new DAG")

    def push(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", "push", *args], cwd=working_copy, env=env, capture_output=True, text=True
        )

    aside = push("origin", "HEAD:refs/heads/try-it")
    tracked = push("origin", "main")

    said = "Airflow picks this push up within seconds: `mlops-ide dag status --wait 30`"
    assert aside.returncode == 0 and said not in aside.stderr  # Airflow does not read that branch
    assert tracked.returncode == 0 and said in tracked.stderr, tracked.stderr
    assert "checking 1 DAG file(s)" in tracked.stderr  # outside the platform, the clone checks


def test_without_the_dag_folder_check_says_what_to_set_and_the_pre_push_hook_lets_go(
    user_bin: Path, tmp_path: Path
) -> None:
    clone = team_clone(tmp_path, {"pipelines/two.py": GOOD_DAG, "Docker/Dockerfile": "FROM scratch\n"})
    env = user_env(user_bin)  # the default, dags/, which this repository does not have
    (clone / "pipelines" / "broken.py").write_text(BROKEN_DAG)
    git(clone, "add", ".")
    git(clone, "commit", "--quiet", "-m", "a broken DAG where the platform does not look")

    checked = subprocess.run(
        ["mlops-ide", "dag", "check"], env=env, cwd=clone, capture_output=True, text=True, timeout=300
    )
    pushed = subprocess.run(
        ["git", "push", "origin", "main"], env=env, cwd=clone, capture_output=True, text=True
    )

    assert checked.returncode == 2
    assert "no DAG folder dags/ (MLOPS_IDE_DAGS_FOLDER" in checked.stderr, checked.stderr
    assert "its top folders: Docker/, pipelines/" in checked.stderr
    assert pushed.returncode == 0, pushed.stderr  # it cannot judge: it says why, once, and lets git go on
    assert pushed.stderr.count("no DAG check before this push: team has no DAG folder dags/") == 1, (
        pushed.stderr
    )


def test_the_pre_push_hook_never_replaces_a_hook_of_the_users_own(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "init", "--quiet", str(clone)], check=True)
    own = clone / ".git" / "hooks" / "pre-push"
    own.write_text("#!/bin/sh\necho mine\n")

    assert git_hooks.install_pre_push(clone) is False
    assert own.read_text() == "#!/bin/sh\necho mine\n"
    own.unlink()
    assert git_hooks.install_pre_push(clone) is True
    own.write_text(own.read_text().replace("exec mlops-ide", "exec old-mlops-ide"))  # ours, older
    assert git_hooks.install_pre_push(clone) is True
    assert own.read_text() == git_hooks.PRE_PUSH


def test_dag_test_runs_the_working_copys_dag_and_fails_with_the_tasks_log(
    user_bin: Path, working_copy: Path
) -> None:
    passed = mlops_ide(user_bin, working_copy, "dag", "test", "dags/two.py")  # the open file's DAG
    assert passed.returncode == 0, passed.stderr[-3000:]
    assert "hello from first" in passed.stdout and "second got 1" in passed.stdout
    assert "two_tasks passed" in passed.stderr

    (working_copy / "dags" / "two.py").write_text(GOOD_DAG.replace("if x != 1", "if x == 1"))  # not committed
    failed = mlops_ide(user_bin, working_copy, "dag", "test", "two_tasks")
    assert failed.returncode == 1
    assert "ValueError: boom" in failed.stdout
    assert "two_tasks failed" in failed.stderr
    throwaway = Path(failed.stderr.split("database for this test (")[1].split(")")[0])
    assert throwaway.name.startswith("mlops-ide-dag-test-") and not throwaway.exists()


def test_dag_test_lists_the_dags_for_an_unknown_id_and_names_a_missing_variable(
    user_bin: Path, working_copy: Path
) -> None:
    unknown = mlops_ide(user_bin, working_copy, "dag", "test", "no_such_dag")
    assert unknown.returncode == 2
    assert "no DAG 'no_such_dag'" in unknown.stderr and "two_tasks" in unknown.stderr

    needs = GOOD_DAG.replace(
        'print("hello from first")', 'from airflow.sdk import Variable; Variable.get("threshold")'
    )
    (working_copy / "dags" / "two.py").write_text(needs)
    missing = mlops_ide(user_bin, working_copy, "dag", "test", "two_tasks", "--conf", '{"epochs": 1}')
    assert missing.returncode == 1
    assert "it needs variable 'threshold'" in missing.stderr

    bad_conf = mlops_ide(user_bin, working_copy, "dag", "test", "two_tasks", "--conf", "{epochs")
    assert bad_conf.returncode == 2 and "--conf is not JSON" in bad_conf.stderr
