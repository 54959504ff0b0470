"""Preview branches on the local remote (issue 29), through its real pre-receive and
post-receive hooks (mlops_ide/portable/push_hook.py) as `make up` installs them: a person's
`preview/<person>/<topic>` is theirs to push, force-push and delete; nobody else's (but an
admin's); its name must be one the platform can run; one more than the limit is refused with
the list; an untouched one is deleted. Pushes arrive as the git service hands them over:
REMOTE_USER and REMOTE_USER_IS_ADMIN in the hooks' environment (a local push passes its own
environment to git receive-pack). No DAG check or push check listens here: those pushes go
through unchecked and say so (tests/platform/test_preview_push.py has them)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mlops_ide.hub.modes import load
from mlops_ide.in_airflow import push_check
from mlops_ide.machine.state.code_copy import install_code
from mlops_ide.machine.state.layout import dag_sandbox_socket, push_check_socket
from mlops_ide.machine.state.remote import ensure_local_remote, install_push_hooks, push_check_listener
from mlops_ide.machine.state.tools import Tools
from mlops_ide.portable import previews, push_hook
from mlops_ide.settings import Settings
from tests.support.gitrepos import git, user_commit


@pytest.fixture
def remote_and_clone(tmp_path: Path) -> tuple[Path, Path]:
    return remote_with_settings(tmp_path)


def remote_with_settings(tmp_path: Path, **values: str) -> tuple[Path, Path]:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state"), **values})
    remote, _ = ensure_local_remote(settings)
    install_code(settings)
    install_push_hooks(settings, Tools.load())
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(remote), str(clone))
    git(clone, "config", "user.name", "t")
    git(clone, "config", "user.email", "t@t")
    return remote, clone


def push_as(
    clone: Path, user: str | None, *args: str, admin: bool = False, when: int | None = None
) -> subprocess.CompletedProcess:
    """`git push args` as the git service runs it for hub user `user` (None: in the folder)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("REMOTE_USER")}
    if user is not None:
        env |= {"REMOTE_USER": user, "REMOTE_USER_IS_ADMIN": "1" if admin else "0"}
    if when is not None:  # the time the remote's reflog records for the update
        env |= {"GIT_COMMITTER_DATE": f"@{when} +0000"}
    return subprocess.run(["git", "push", *args], cwd=clone, capture_output=True, text=True, env=env)


def branches(remote: Path) -> list[str]:
    return git(remote, "for-each-ref", "--format=%(refname:short)", "refs/heads/").split()


def test_the_owner_creates_pushes_force_pushes_and_deletes_their_preview(
    remote_and_clone: tuple[Path, Path],
) -> None:
    remote, clone = remote_and_clone
    first = user_commit(clone, {"dags/a.py": "# a\n"}, "a")
    created = push_as(clone, "alice", "origin", "HEAD:preview/alice/lr")
    second = user_commit(clone, {"dags/b.py": "# b\n"}, "b")
    moved = push_as(clone, "alice", "origin", "HEAD:preview/alice/lr")
    rewritten = push_as(clone, "alice", "--force", "origin", f"{first}:preview/alice/lr")
    at = git(remote, "rev-parse", "preview/alice/lr")
    deleted = push_as(clone, "alice", "origin", ":preview/alice/lr")

    for result in (created, moved, rewritten, deleted):
        assert result.returncode == 0, result.stderr
    assert second != first == at
    assert "preview/alice/lr" not in branches(remote)
    # the push check is away: the hook says so rather than pretend the preview runs
    assert "cannot tell Airflow of preview/alice/lr" in created.stderr
    assert "main" in branches(remote)


def test_nobody_else_pushes_or_deletes_a_preview_but_an_admin_or_the_folder(
    remote_and_clone: tuple[Path, Path],
) -> None:
    remote, clone = remote_and_clone
    assert push_as(clone, "alice", "origin", "HEAD:preview/alice/lr").returncode == 0
    theirs = git(remote, "rev-parse", "preview/alice/lr")
    user_commit(clone, {"dags/bob.py": "# bob\n"}, "bob's")

    bob_pushes = push_as(clone, "bob", "origin", "HEAD:preview/alice/lr")
    bob_deletes = push_as(clone, "bob", "origin", ":preview/alice/lr")
    bob_creates = push_as(clone, "bob", "origin", "HEAD:preview/alice/other")

    for refused in (bob_pushes, bob_deletes, bob_creates):
        assert refused.returncode != 0
        assert "is alice's preview: only they or a hub admin may change it" in refused.stderr, refused.stderr
        assert "push to preview/bob/<topic>" in refused.stderr
    assert git(remote, "rev-parse", "preview/alice/lr") == theirs
    assert "preview/alice/other" not in branches(remote)
    assert push_as(clone, "bob", "origin", "HEAD:preview/alice/lr", admin=True).returncode == 0
    assert push_as(clone, None, "origin", ":preview/alice/lr").returncode == 0  # in the folder itself
    assert "preview/alice/lr" not in branches(remote)


@pytest.mark.parametrize(
    ("branch", "told"),
    [
        ("preview/Alice/x", "'Alice' in preview/Alice/x is not a hub name"),
        ("preview/alice", "preview/alice is not a preview branch"),
        ("preview/alice/a/b", "preview/alice/a/b is not a preview branch"),
        ("preview", "preview is not a preview branch"),
        ("preview/alice/x_y", "'x_y' in preview/alice/x_y is not a topic"),
        ("preview/alice/x%2Fmain", "'x%2Fmain' in preview/alice/x%2Fmain is not a topic"),
        ("preview/alice/" + "a" * 300, "is not a topic: lowercase letters, digits, `.` and `-`, up to 32"),
        ("preview/alice/-x", "is not a topic"),
        ("preview/" + "b" * 200 + "/x", "is not a hub name"),
    ],
)
def test_a_preview_name_the_platform_cannot_run_is_refused_with_what_to_push(
    remote_and_clone: tuple[Path, Path], branch: str, told: str
) -> None:
    remote, clone = remote_and_clone

    refused = push_as(clone, "alice", "origin", f"HEAD:refs/heads/{branch}")

    assert refused.returncode != 0
    assert told in refused.stderr, refused.stderr
    assert (
        "git push origin HEAD:preview/" in refused.stderr or "e.g. preview/alice/lr-sweep" in refused.stderr
    )
    assert branches(remote) == ["main"]


def test_a_name_git_itself_refuses_never_reaches_the_remote(remote_and_clone: tuple[Path, Path]) -> None:
    remote, clone = remote_and_clone

    for branch in (
        "preview/alice/../x",
        "preview/alice/x%2F..%2Fmain",
        "preview/alice/.x",
        "preview/alice/x y",
    ):
        assert push_as(clone, "alice", "origin", f"HEAD:refs/heads/{branch}").returncode != 0
    assert branches(remote) == ["main"]


def test_one_preview_more_than_the_limit_is_refused_with_the_list_and_how_to_delete_one(
    remote_and_clone: tuple[Path, Path],
) -> None:
    remote, clone = remote_and_clone
    for topic in ("a", "b", "c"):
        assert push_as(clone, "alice", "origin", f"HEAD:preview/alice/{topic}").returncode == 0
    assert push_as(clone, "bob", "origin", "HEAD:preview/bob/a").returncode == 0  # bob's count is his

    fourth = push_as(clone, "alice", "origin", "HEAD:preview/alice/d")
    two_at_once = push_as(
        clone, "bob", "origin", "HEAD:preview/bob/b", "HEAD:preview/bob/c", "HEAD:preview/bob/d"
    )
    swapped = push_as(clone, "alice", "origin", ":preview/alice/a", "HEAD:preview/alice/d")

    assert fourth.returncode != 0
    assert (
        "alice would have 4 previews, the limit is 3 (now: preview/alice/a, preview/alice/b, "
        "preview/alice/c): delete one with `git push origin :preview/alice/a`"
    ) in fourth.stderr, fourth.stderr
    assert two_at_once.returncode != 0 and "bob would have 4 previews" in two_at_once.stderr
    assert swapped.returncode == 0, swapped.stderr  # one deleted in the same push: still 3
    assert branches(remote) == [
        "main",
        "preview/alice/b",
        "preview/alice/c",
        "preview/alice/d",
        "preview/bob/a",
    ]


def test_a_limit_of_one_from_the_setting(tmp_path: Path) -> None:
    _, clone = remote_with_settings(tmp_path, MLOPS_IDE_PREVIEWS_PER_PERSON="1")
    assert push_as(clone, "alice", "origin", "HEAD:preview/alice/a").returncode == 0

    second = push_as(clone, "alice", "origin", "HEAD:preview/alice/b")

    assert second.returncode != 0 and "the limit is 1" in second.stderr, second.stderr


def test_branches_outside_preview_keep_todays_rules(remote_and_clone: tuple[Path, Path]) -> None:
    """No branch outside preview/ is deleted or rewritten, by anyone, an admin too: the hook
    says so now (git's own receive.denyDeletes would hold for previews too)."""
    remote, clone = remote_and_clone
    main = git(remote, "rev-parse", "main")
    user_commit(clone, {"dags/a.py": "# a\n"}, "a")
    assert push_as(clone, "alice", "origin", "HEAD:alice-work").returncode == 0
    user_commit(clone, {"dags/b.py": "# b\n"}, "b")
    assert push_as(clone, "bob", "origin", "HEAD:alice-work").returncode == 0  # anyone's, as before

    deletes_main = push_as(clone, "bob", "origin", ":main")
    admin_deletes_main = push_as(clone, "carol", "origin", ":main", admin=True)
    deletes_work = push_as(clone, "alice", "origin", ":alice-work")
    rewrites_work = push_as(clone, "alice", "--force", "origin", "HEAD~2:alice-work")

    for refused in (deletes_main, admin_deletes_main, deletes_work):
        assert refused.returncode != 0 and "deletion prohibited" in refused.stderr, refused.stderr
    assert rewrites_work.returncode != 0 and "non-fast-forward" in rewrites_work.stderr
    assert git(remote, "rev-parse", "main") == main
    assert git(remote, "rev-parse", "alice-work") == git(clone, "rev-parse", "HEAD")


def test_only_who_may_push_the_tracked_branch_may_push_a_preview(tmp_path: Path) -> None:
    """A preview runs as the pipeline: MLOPS_IDE_TRACKED_BRANCH_PUSHERS holds for it too."""
    remote, clone = remote_with_settings(tmp_path, MLOPS_IDE_TRACKED_BRANCH_PUSHERS="carol,admins")

    alice = push_as(clone, "alice", "origin", "HEAD:preview/alice/lr")
    carol = push_as(clone, "carol", "origin", "HEAD:preview/carol/lr")
    admin = push_as(clone, "dave", "origin", "HEAD:preview/dave/lr", admin=True)

    assert alice.returncode != 0, alice.stderr
    assert "a preview runs as the pipeline, so only carol and the hub's admins may push one" in alice.stderr
    assert carol.returncode == 0 and admin.returncode == 0, carol.stderr + admin.stderr
    assert branches(remote) == ["main", "preview/carol/lr", "preview/dave/lr"]
    # one left from before the setting named fewer: its person may still delete it
    assert push_as(clone, None, "origin", "HEAD:preview/alice/old").returncode == 0
    assert push_as(clone, "alice", "origin", ":preview/alice/old").returncode == 0


def test_a_preview_nobody_pushed_to_for_the_days_goes_at_the_next_push(tmp_path: Path) -> None:
    """The remote's reflog says when a branch last moved (a push in the folder may set the
    time it records, as here; a push through the git service cannot)."""
    remote, clone = remote_with_settings(tmp_path, MLOPS_IDE_PREVIEW_DAYS="7")
    eight_days_ago, six_days_ago = int(time.time()) - 8 * 86400, int(time.time()) - 6 * 86400
    own = push_as(clone, None, "origin", "HEAD:preview/alice/old", when=eight_days_ago)
    assert own.returncode == 0 and "preview/alice/old" in branches(remote)  # not by its own push

    next_push = push_as(clone, None, "origin", "HEAD:preview/bob/recent", when=six_days_ago)
    then = push_as(clone, "carol", "origin", "HEAD:carol-work")

    assert next_push.returncode == 0 and then.returncode == 0, next_push.stderr + then.stderr
    assert "preview/alice/old: nobody pushed to it for 7 days: deleted" in next_push.stderr, next_push.stderr
    assert "deleted" not in then.stderr  # six days: kept
    assert branches(remote) == ["carol-work", "main", "preview/bob/recent"]


@contextmanager
def push_check_listening(tmp_path: Path, settings: Settings) -> Iterator[Path]:
    """The real push check, in a thread, where the hooks look (no Airflow answers it); yields
    the registry it keeps."""
    registry = tmp_path / "state" / "push-status" / "previews.json"
    registry.parent.mkdir(parents=True, exist_ok=True)  # the platform makes it
    (tmp_path / "passwords.json").write_text(json.dumps({"mlops-ide-platform": "pw"}))
    listener = push_check_listener(settings, {})
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket-fd", type=int)
    push_check.add_airflow_arguments(parser)
    argv = ["--socket-fd", str(listener.detach()), "--airflow-url", "http://127.0.0.1:9", "--wait", "0.1"]
    argv += ["--passwords-file", str(tmp_path / "passwords.json"), "--bundle", "pipelines", "--dag", "x"]
    argv += ["--previews-file", str(registry), "--preview-slots", "6", "--ui-url", "https://hub/airflow"]
    args = parser.parse_args(argv)
    server = push_check.Server(args)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield registry
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def slots_of(registry: Path) -> list[str]:
    return [entry.branch for entry in previews.read(registry)]


def test_a_deletion_pushed_with_a_path_git_quotes_frees_the_slot(tmp_path: Path) -> None:
    """The reviewer's push: main adding `é.md` (git quotes it without -z) and deleting a preview
    at once. Each post-receive stage is its own: none skips the deletion's report."""
    _, clone = remote_with_settings(tmp_path)
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    with push_check_listening(tmp_path, settings) as registry:
        assert push_as(clone, "bob", "origin", "HEAD:preview/bob/t").returncode == 0
        held = slots_of(registry)
        user_commit(clone, {"é.md": "accents\n", "dags/\u00e9t\u00e9.py": "# summer\n"}, "é")
        both = push_as(clone, "bob", "origin", "HEAD:main", ":preview/bob/t")
        left = slots_of(registry)

    assert both.returncode == 0, both.stderr
    assert held == ["preview/bob/t"]
    assert "failed" not in both.stderr, both.stderr
    assert "mlops-ide: preview removed: preview/bob/t" in both.stderr, both.stderr
    assert left == []


def test_a_deletion_the_push_check_missed_frees_the_slot_at_the_next_push(tmp_path: Path) -> None:
    _, clone = remote_with_settings(tmp_path)
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    with push_check_listening(tmp_path, settings) as registry:
        assert push_as(clone, "bob", "origin", "HEAD:preview/bob/t").returncode == 0
        assert push_as(clone, "alice", "origin", "HEAD:preview/alice/kept").returncode == 0
    missed = push_as(clone, "bob", "origin", ":preview/bob/t")  # the push check is away
    still = slots_of(registry)
    with push_check_listening(tmp_path, settings) as registry:
        user_commit(clone, {"notes.md": "x\n"}, "elsewhere")
        later = push_as(clone, "carol", "origin", "HEAD:carol-work")
        left = slots_of(registry)

    assert missed.returncode == 0 and "cannot tell Airflow of preview/bob/t" in missed.stderr
    assert still == ["preview/bob/t", "preview/alice/kept"]
    assert later.returncode == 0, later.stderr
    assert left == ["preview/alice/kept"]


def test_no_tag_takes_a_previews_name_or_an_existing_branchs(remote_and_clone: tuple[Path, Path]) -> None:
    """Airflow's clone resolves refs/tags before a branch it has not fetched: a tag
    `preview/alice/lr` would be what alice's slot runs."""
    remote, clone = remote_and_clone
    assert push_as(clone, "alice", "origin", "HEAD:alice-work").returncode == 0
    for tag in ("preview/alice/lr", "preview/bob/x", "preview", "alice-work"):
        taken = push_as(clone, "bob", "origin", f"HEAD:refs/tags/{tag}")
        assert taken.returncode != 0 and f"tag {tag}: the name would shadow a branch" in taken.stderr, tag
    assert push_as(clone, "bob", "origin", "HEAD:refs/tags/v1").returncode == 0
    assert git(remote, "tag", "--list") == "v1"


def test_a_dag_check_that_answers_nothing_refuses_the_push_only_one_away_lets_it_through(
    tmp_path: Path,
) -> None:
    """Fail closed: only a sandbox that does not listen (Airflow off) passes a push unchecked."""
    remote, clone = remote_with_settings(tmp_path)
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    main = git(remote, "rev-parse", "main")
    user_commit(clone, {"dags/a.py": "# a\n"}, "a")
    listener = push_check_listener(settings, {}, path=dag_sandbox_socket(settings))

    def hang_up() -> None:  # a sandbox that dies on each request, until it is closed
        with contextlib.suppress(OSError):
            while True:
                listener.accept()[0].close()

    threading.Thread(target=hang_up, daemon=True).start()
    dying = push_as(clone, "bob", "origin", "HEAD:main")
    listener.close()
    dag_sandbox_socket(settings).unlink()
    away = push_as(clone, "bob", "origin", "HEAD:main")

    assert dying.returncode != 0, dying.stderr
    assert "push refused: the DAG check failed on this push" in dying.stderr, dying.stderr
    assert away.returncode == 0, away.stderr
    assert "DAG check unavailable (FileNotFoundError); pushed unchecked" in away.stderr
    assert git(remote, "rev-parse", "main") != main


def test_a_post_receive_stage_that_fails_is_said_and_skips_no_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The live report failing (any way: it is made to here) still lets the deletion's report
    and the listing of the remote's previews through."""
    remote, clone = remote_with_settings(tmp_path)
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    with push_check_listening(tmp_path, settings) as registry:
        assert push_as(clone, "bob", "origin", "HEAD:preview/bob/t").returncode == 0
        held = slots_of(registry)
        old = git(remote, "rev-parse", "preview/bob/t")
        git(remote, "update-ref", "-d", "refs/heads/preview/bob/t")  # as git does before post-receive
        main = git(remote, "rev-parse", "main")
        updates = f"{old} {'0' * 40} refs/heads/preview/bob/t\n{main} {main} refs/heads/main\n"

        def fails(*_: object) -> None:
            raise RuntimeError("made to fail")

        monkeypatch.setattr(push_hook, "report_live", fails)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(updates.encode())))
        monkeypatch.chdir(remote)
        monkeypatch.setenv("REMOTE_USER", "bob")
        sockets = ["--socket", str(push_check_socket(settings))]
        sockets += ["--check-socket", str(dag_sandbox_socket(settings))]
        assert push_hook.main(["post-receive", *sockets, "--branch", "main"]) == 0
        left = slots_of(registry)

    said = capsys.readouterr().out
    assert held == ["preview/bob/t"]
    assert "mlops-ide: telling what is live failed (RuntimeError('made to fail'))" in said, said
    assert "mlops-ide: preview removed: preview/bob/t" in said
    assert left == []


@contextmanager
def full_sandbox_queue(settings: Settings) -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    """A sandbox socket that accepts nothing yet (listen(0)), its queue filled: a connection
    more gets EAGAIN at once, as the real sandbox's does while it checks others' pushes."""
    listener = push_check_listener(settings, {}, path=dag_sandbox_socket(settings))
    listener.listen(0)  # the platform's socket, its queue made short to fill it quickly
    fillers = []
    try:
        while True:
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            filler.setblocking(False)
            fillers.append(filler)
            filler.connect(str(dag_sandbox_socket(settings)))
    except BlockingIOError:
        pass
    try:
        yield listener, fillers
    finally:
        for filler in fillers:
            filler.close()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes an accept() waiting in another thread
        listener.close()


def answer_checks(listener: socket.socket, problem: str) -> None:
    """Until `listener` is closed: every check request is answered with `problem` (in
    dags/a.py); the fillers, closed, send nothing and get nothing."""
    with contextlib.suppress(OSError):
        while True:
            connection, _ = listener.accept()
            with connection:
                line = connection.makefile("rb").readline()
                if line:
                    answer = {"problems": [problem], "broken": ["dags/a.py"], "summary": ""}
                    connection.sendall(json.dumps(answer).encode() + b"\n")


def test_a_push_waits_for_a_busy_dag_check_and_is_checked_never_passed_unchecked(tmp_path: Path) -> None:
    """A full queue (EAGAIN) is not `nobody listens`: the hook says it waits, and once the
    sandbox takes its request, the check's verdict decides (here: a broken DAG, refused)."""
    remote, clone = remote_with_settings(tmp_path)
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    main = git(remote, "rev-parse", "main")
    user_commit(clone, {"dags/a.py": "# a\n"}, "a")
    env = {key: value for key, value in os.environ.items() if not key.startswith("REMOTE_USER")}
    env |= {"REMOTE_USER": "bob", "REMOTE_USER_IS_ADMIN": "0"}
    with full_sandbox_queue(settings) as (listener, fillers):
        push = subprocess.Popen(
            ["git", "push", "origin", "HEAD:main"], cwd=clone, stderr=subprocess.PIPE, text=True, env=env
        )
        said = []
        for line in push.stderr:  # ends at the push's end when the hook does not wait
            said.append(line)
            if "the DAG check is busy with other pushes: waiting for it" in line:
                break
        for filler in fillers:  # their checks are done: the queue moves
            filler.close()
        broken = "dags/a.py:1: broken on purpose"
        server = threading.Thread(target=answer_checks, args=(listener, broken), daemon=True)
        server.start()
        said += push.stderr.readlines()
        push.wait()
    server.join()

    told = "".join(said)
    assert "DAG check unavailable" not in told, told
    assert "the DAG check is busy with other pushes: waiting for it" in told, told
    assert push.returncode != 0, told
    assert "dags/a.py:1: broken on purpose" in told, told
    assert git(remote, "rev-parse", "main") == main


def test_a_dag_check_busy_until_the_deadline_refuses_the_push(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The pre-receive hook itself (in this process, its deadline short): a sandbox whose
    queue stays full refuses the push, saying to push again, rather than let it through."""
    remote, clone = remote_with_settings(tmp_path)
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})
    main = git(remote, "rev-parse", "main")
    new = user_commit(clone, {"dags/a.py": "# a\n"}, "a")
    assert push_as(clone, "bob", "origin", "HEAD:bob-work").returncode == 0  # its objects in the remote
    monkeypatch.setattr(push_hook, "CHECK_SECONDS", 0.5)
    updates = f"{main} {new} refs/heads/main\n"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(updates.encode())))
    monkeypatch.chdir(remote)
    monkeypatch.setenv("REMOTE_USER", "bob")
    monkeypatch.setenv("REMOTE_USER_IS_ADMIN", "0")
    sockets = ["--socket", str(push_check_socket(settings))]
    sockets += ["--check-socket", str(dag_sandbox_socket(settings))]
    with full_sandbox_queue(settings):
        refused = push_hook.main(["pre-receive", *sockets, "--branch", "main"])

    said = capsys.readouterr().out
    assert refused == 1, said
    assert "mlops-ide: push refused: the DAG check is busy with other pushes (0.5 s waited)" in said
    assert "push again in a moment" in said
    assert "unchecked" not in said
