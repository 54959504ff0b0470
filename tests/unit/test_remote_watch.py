"""The remote watch's change detection (which commit still needs a verdict), its failures
logged once per kind, and how the push check words a verdict for the status file."""

from __future__ import annotations

from mlops_ide.in_airflow import push_check, remote_watch
from mlops_ide.in_airflow.remote_watch import GIVE_UP_AFTER, OnceALog, PollError, Watch, head_of

OLD, NEW, NEWER = "a" * 40, "b" * 40, "c" * 40


def test_the_tracked_branch_is_read_exactly_not_a_longer_ref_that_ends_like_it() -> None:
    listed = f"{NEWER}\trefs/heads/feature/refs/heads/main\n{NEW}\trefs/heads/main\n"

    assert head_of(listed, "main") == NEW
    assert head_of(f"{NEWER}\trefs/heads/main-2\n", "main") is None  # another branch: nothing to do


def test_a_new_head_needs_a_verdict_and_the_same_head_does_not() -> None:
    watch = Watch(known=OLD)

    assert watch.todo(OLD) is None
    assert watch.todo(None) is None  # the branch is gone (or not there yet): nothing to do
    assert watch.todo(NEW) == NEW
    assert watch.settle(NEW, "live", now=0.0)
    assert watch.todo(NEW) is None and watch.done == NEW  # the next diff starts at NEW


def test_a_commit_still_parsing_is_tried_again_until_it_settles_or_the_watch_gives_up() -> None:
    watch = Watch(known=OLD)

    assert not watch.settle(NEW, "pending", now=100.0)
    assert watch.todo(NEW) == NEW and watch.done == OLD  # tried again at the next poll, same base
    assert not watch.settle(NEW, "unknown", now=100.0 + GIVE_UP_AFTER - 1)
    assert watch.settle(NEW, "pending", now=100.0 + GIVE_UP_AFTER)  # given up: stays "pending"
    assert watch.todo(NEW) is None


def test_a_push_while_one_is_parsing_is_diffed_from_the_last_settled_commit() -> None:
    watch = Watch(known=OLD)
    watch.settle(NEW, "pending", now=0.0)

    assert watch.todo(NEWER) == NEWER and watch.done == OLD
    assert watch.settle(NEWER, "broken", now=1.0) and watch.done == NEWER


def test_a_first_start_with_no_verdict_yet_wants_one_for_the_current_head() -> None:
    assert Watch(known=None).todo(NEW) == NEW


def test_poll_failures_are_logged_once_per_kind_until_the_remote_answers_again() -> None:
    said: list[str] = []
    failures = OnceALog(said.append)

    for _ in range(30):  # a minute of polls every 2 s
        failures.failed(PollError("network", "git ls-remote: Could not resolve host: github.com"))
    failures.failed(PollError("auth", "git ls-remote: Authentication failed"))
    failures.failed(PollError("auth", "git ls-remote: Authentication failed"))
    failures.succeeded()
    failures.succeeded()
    failures.failed(PollError("network", "again"))

    assert [line.split(":")[0] for line in said] == [
        "cannot poll the remote (network)",
        "cannot poll the remote (auth)",
        "the remote answers again (after",
        "cannot poll the remote (network)",
    ]


def test_failures_are_sorted_into_kinds_an_operator_can_act_on() -> None:
    kind = remote_watch.failure_kind

    assert kind("fatal: Authentication failed for 'https://github.com/team/repo.git/'") == "auth"
    assert (
        kind("fatal: could not read Username for 'https://github.com': terminal prompts disabled") == "auth"
    )
    assert kind("fatal: unable to access '...': Could not resolve host: github.com") == "network"
    assert kind("fatal: unable to access '...': Failed to connect to 127.0.0.1 port 9") == "network"
    assert kind("remote: Repository not found.") == "repository"


def test_an_import_error_names_the_file_and_the_line_airflow_names() -> None:
    trace = (
        "Traceback (most recent call last):\n"
        '  File "/opt/airflow/lib/python3.11/importlib/__init__.py", line 126, in import_module\n'
        '  File "/state/airflow/dag_bundles/pipelines/tracking_repo/dags/broken.py", line 9, in <module>\n'
        "    load()\n"
        '  File "/state/airflow/dag_bundles/pipelines/tracking_repo/dags/broken.py", line 2, in load\n'
        "    import module_that_is_not_installed\n"
        "ModuleNotFoundError: No module named 'module_that_is_not_installed'\n"
    )

    line = push_check.import_error_line("dags/broken.py", trace)

    assert line == (
        "dags/broken.py:2: import error: ModuleNotFoundError: No module named 'module_that_is_not_installed'"
    )
    assert push_check.import_error_line("dags/other_broken.py", trace).startswith("dags/other_broken.py: ")


def test_the_verdict_in_a_word_for_the_status_file() -> None:
    state = push_check.state_of

    assert state(["live: x", "Airflow runs 1a2b (in 1.0 s)"]) == "live"
    assert state(["next runs use 1a2b (no DAG file changed; in 1.0 s)"]) == "live"
    assert state(["live: x", "dags/y.py:3: import error: SyntaxError: invalid syntax"]) == "broken"
    assert state(["still parsing after 10.0 s; see http://127.0.0.1/dags"]) == "pending"
    assert state(["cannot tell what is live (URLError); see http://127.0.0.1"]) == "unknown"


def test_dag_files_are_those_of_the_dags_folder_wherever_it_is() -> None:
    assert push_check.is_dag_file("dags/x.py", "dags")
    assert push_check.is_dag_file("dags/sub/x.py", "dags")
    assert not push_check.is_dag_file("src/x.py", "dags")
    assert push_check.is_dag_file("pipelines/dags/x.py", "pipelines/dags")
    assert push_check.is_dag_file("x.py", ".") and not push_check.is_dag_file("dags/README.md", "dags")
