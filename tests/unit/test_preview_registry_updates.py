"""Who writes the previews' registry (mlops_ide/portable/previews.py), on a real registry file:
the push check, told of a preview's push or deletion by the local remote's post-receive hook
(mlops_ide/in_airflow/push_check.py), and the watch of a remote outside the platform
(mlops_ide/in_airflow/remote_watch.py), which lists the remote's preview branches."""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlops_ide.in_airflow import push_check, remote_watch
from mlops_ide.portable import previews

A, B, C, D = ("a" * 40, "b" * 40, "c" * 40, "d" * 40)
NOW = 1_800_000_000.0
DAY = 86400.0


def arguments(tmp_path: Path, airflow_url: str = "http://127.0.0.1:9", **more: object) -> argparse.Namespace:
    """The push check's arguments as the platform gives them (machine/components/airflow.py)."""
    (tmp_path / "passwords.json").write_text(json.dumps({"mlops-ide-platform": "pw"}))
    (tmp_path / "push-status").mkdir(exist_ok=True)  # the platform's (verdict_arguments)
    parser = argparse.ArgumentParser()
    push_check.add_airflow_arguments(parser)
    argv = ["--airflow-url", airflow_url, "--passwords-file", str(tmp_path / "passwords.json")]
    argv += ["--bundle", "pipelines", "--dag", "cnn_skin_cancer_workflow", "--wait", "1"]
    argv += ["--previews-file", str(tmp_path / "push-status" / "previews.json"), "--preview-slots", "2"]
    argv += [
        "--previews-per-person",
        "2",
        "--preview-days",
        "7",
        "--ui-url",
        "https://hub.example/services/airflow",
    ]
    args = parser.parse_args(argv)
    vars(args).update(more)
    return args


def registry(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    return [
        (entry.slot, entry.branch, entry.commit, entry.pushed_by)
        for entry in previews.read(args.previews_file)
    ]


def test_the_push_check_gives_a_pushed_preview_a_slot_moves_it_and_frees_it(tmp_path: Path) -> None:
    args = arguments(tmp_path)

    first = push_check.preview(args, {"branch": "preview/alice/lr", "commit": A, "pushed_by": "alice"})
    other = push_check.preview(args, {"branch": "preview/bob/x", "commit": B, "pushed_by": "bob"})
    moved = push_check.preview(args, {"branch": "preview/alice/lr", "commit": C, "pushed_by": "admin"})
    assert registry(args) == [
        ("preview-1", "preview/alice/lr", C, "admin"),
        ("preview-2", "preview/bob/x", B, "bob"),
    ]
    removed = push_check.preview(args, {"branch": "preview/alice/lr", "commit": None, "pushed_by": "alice"})

    assert registry(args) == [("preview-2", "preview/bob/x", B, "bob")]
    assert removed == ["preview removed: preview/alice/lr"]
    # no Airflow answers here: the slot is taken all the same, and the answer says so
    for lines in (first, other, moved):
        assert len(lines) == 1 and "cannot tell what is live (URLError)" in lines[0], lines
    assert first[0].startswith("preview/alice/lr is in preview-1; ")
    assert (args.previews_file.stat().st_mode & 0o044) == 0o044  # every account reads it


def test_a_preview_with_no_slot_left_is_answered_why_and_not_recorded(tmp_path: Path) -> None:
    args = arguments(tmp_path)
    push_check.preview(args, {"branch": "preview/alice/a", "commit": A, "pushed_by": "alice"})
    push_check.preview(args, {"branch": "preview/alice/b", "commit": B, "pushed_by": "alice"})

    third = push_check.preview(args, {"branch": "preview/alice/c", "commit": C, "pushed_by": "alice"})
    bobs = push_check.preview(args, {"branch": "preview/bob/a", "commit": D, "pushed_by": "bob"})

    assert third == [
        "preview not run: you have 2 previews, the limit is 2 (preview/alice/a, preview/alice/b): "
        "delete one with `git push origin :preview/alice/a`"
    ]
    assert bobs[0].startswith("preview not run: all 2 preview slots are taken"), bobs
    assert [branch for _, branch, _, _ in registry(args)] == ["preview/alice/a", "preview/alice/b"]


def test_a_crafted_preview_message_changes_nothing(tmp_path: Path) -> None:
    args = arguments(tmp_path)
    for bad in (
        {"branch": "preview/alice/../x", "commit": A},
        {"branch": "main", "commit": A},
        {"branch": "preview/alice/x", "commit": "not-a-commit"},
    ):
        with pytest.raises(ValueError):
            push_check.preview(args, bad)
    assert not args.previews_file.exists()


def test_an_expirys_late_report_does_not_free_the_slot_its_owner_took_again(tmp_path: Path) -> None:
    """Expiry deletes preview/alice/lr (and lists the remote's previews, without it); alice
    pushes it again, and her report arrives first: the expiry's, older than her push, keeps it."""
    args = arguments(tmp_path)
    listed_by_expiry = time.time() - 1  # before alice's push
    push_check.preview(
        args,
        {
            "branch": "preview/alice/lr",
            "commit": B,
            "pushed_by": "alice",
            "remote": {"branches": ["preview/alice/lr"], "listed": time.time()},
        },
    )
    late = push_check.preview(
        args,
        {
            "branch": "preview/alice/lr",
            "commit": None,
            "pushed_by": "expiry",
            "remote": {"branches": [], "listed": listed_by_expiry},
        },
    )
    assert late == ["preview/alice/lr was pushed again since: it keeps its slot"]
    assert registry(args) == [("preview-1", "preview/alice/lr", B, "alice")]
    # the list of a later push, without the branch: gone now
    assert push_check.reconcile(args, {"branches": [], "listed": time.time() + 1}) == [
        "preview removed: preview/alice/lr (its branch is gone)"
    ]
    assert registry(args) == []


def test_a_crafted_list_of_the_remotes_previews_changes_nothing(tmp_path: Path) -> None:
    args = arguments(tmp_path)
    push_check.preview(args, {"branch": "preview/alice/lr", "commit": A, "pushed_by": "alice"})
    for bad in ("x", {"branches": "preview/alice/lr", "listed": 1.0}, {"branches": [], "listed": "1"}):
        with pytest.raises(ValueError, match="remote: "):
            push_check.reconcile(args, bad)
    assert registry(args) == [("preview-1", "preview/alice/lr", A, "alice")]


def test_previews_off_are_said_and_nothing_is_written(tmp_path: Path) -> None:
    args = arguments(tmp_path, preview_slots=0)

    answer = push_check.preview(args, {"branch": "preview/alice/lr", "commit": A, "pushed_by": "alice"})

    assert answer == ["previews are off on this platform: preview/alice/lr is not run"]
    assert not args.previews_file.exists()


@contextmanager
def airflow_api(dags: list[dict]) -> Iterator[tuple[str, list[str]]]:
    """Airflow's REST API as far as the push check reads it for a preview (the answers of
    Airflow 3.3's /auth/token, /api/v2/dags with its bundle_name filter, importErrors,
    parseDagFile), over real HTTP; the requests are kept."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def answer(self, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.answer({"access_token": "t"})

        def do_PUT(self) -> None:
            asked.append(f"PUT {self.path}")
            self.answer({})

        def do_GET(self) -> None:
            asked.append(f"GET {self.path}")
            url = urllib.parse.urlparse(self.path)
            query = urllib.parse.parse_qs(url.query)
            if url.path.endswith("/dags"):
                bundle = query.get("bundle_name", [None])[0]
                self.answer({"dags": [dag for dag in dags if bundle in (None, dag["bundle_name"])]})
            else:
                self.answer({"import_errors": []})

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/services/airflow", asked
    finally:
        server.shutdown()
        server.server_close()


def dag(dag_id: str, bundle: str, version: str, paused: bool = True) -> dict:
    return {
        "dag_id": dag_id,
        "bundle_name": bundle,
        "bundle_version": version,
        "is_stale": False,
        "is_paused": paused,
        "file_token": f"token-{dag_id}",
    }


def test_a_pushed_preview_is_answered_with_its_dags_once_airflow_lists_them_at_its_commit(
    tmp_path: Path,
) -> None:
    listed = [
        dag("cnn_skin_cancer_workflow__alice_lr", "preview-1", A),
        dag("smoke__alice_lr", "preview-1", A, paused=False),
        dag("cnn_skin_cancer_workflow", "pipelines", B, paused=False),  # the tracked branch's
    ]
    with airflow_api(listed) as (url, asked):
        args = arguments(tmp_path, airflow_url=url)
        lines = push_check.preview(args, {"branch": "preview/alice/lr", "commit": A, "pushed_by": "alice"})

    # its slot's DAGs asked by bundle, each file re-parsed: the bundle moves to the commit now
    assert "GET /services/airflow/api/v2/dags?limit=1000&exclude_stale=false&bundle_name=preview-1" in asked
    assert "PUT /services/airflow/api/v2/parseDagFile/token-cnn_skin_cancer_workflow__alice_lr" in asked

    assert lines == [
        "preview: cnn_skin_cancer_workflow__alice_lr (paused) "
        "https://hub.example/services/airflow/dags/cnn_skin_cancer_workflow__alice_lr",
        "preview: smoke__alice_lr (NOT paused) https://hub.example/services/airflow/dags/smoke__alice_lr",
    ]


def test_dags_of_an_earlier_commit_or_branch_in_the_slot_are_not_the_answer(tmp_path: Path) -> None:
    """The slot held bob's preview before, or alice's earlier commit: not yet hers, at the
    commit she pushed; at the deadline the answer says it is still parsing."""
    for stale in (dag("x__bob_old", "preview-1", A), dag("x__alice_lr", "preview-1", B)):
        with airflow_api([stale]) as (url, _):
            args = arguments(tmp_path, airflow_url=url, wait=2.0)  # ample for a local answer
            lines = push_check.preview(
                args, {"branch": "preview/alice/lr", "commit": A, "pushed_by": "alice"}
            )
        args.previews_file.unlink()
        assert len(lines) == 1 and "preview/alice/lr is in preview-1; still parsing after" in lines[0], lines


def test_the_answer_waits_for_every_dag_file_and_an_earlier_previews_stale_dags_do_not_hold_it(
    tmp_path: Path,
) -> None:
    """The hook names the branch's DAG files: the answer comes once each has a DAG at the
    commit (or an import error), not at the first DAG listed; DAGs the slot's previous preview
    left in the same files (stale now) are history, not a verdict still to come."""
    earlier = {**dag("smoke__bob_old", "preview-1", B), "is_stale": True, "relative_fileloc": "smoke.py"}
    smoke = {**dag("smoke__alice_lr", "preview-1", A), "relative_fileloc": "smoke.py"}
    workflow = {**dag("workflow__alice_lr", "preview-1", A), "relative_fileloc": "workflow.py"}
    files = ["dags/smoke.py", "dags/workflow.py"]
    request = {"branch": "preview/alice/lr", "commit": A, "pushed_by": "alice", "files": files}
    with airflow_api([earlier, smoke]) as (url, _):  # workflow.py not parsed yet
        waiting = push_check.preview(arguments(tmp_path, airflow_url=url, wait=1.0), request)
    (tmp_path / "push-status" / "previews.json").unlink()
    with airflow_api([earlier, smoke, workflow]) as (url, _):
        answered = push_check.preview(arguments(tmp_path, airflow_url=url, wait=30.0), request)

    assert "still parsing after" in waiting[-1], waiting
    assert answered == [
        "preview: smoke__alice_lr (paused) https://hub.example/services/airflow/dags/smoke__alice_lr",
        "preview: workflow__alice_lr (paused) https://hub.example/services/airflow/dags/workflow__alice_lr",
    ]


# -- the watch of a remote outside the platform ------------------------------------------------


def watch_arguments(tmp_path: Path) -> argparse.Namespace:
    return arguments(tmp_path, preview_slots=3)


def test_ls_remote_output_names_the_preview_branches_and_nothing_else() -> None:
    listed = f"{A}\trefs/heads/main\n{B}\trefs/heads/preview/alice/lr\n{C}\trefs/heads/previewer\n"
    listed += f"{D}\trefs/heads/preview/bob/x/y\n{A}\trefs/tags/preview/alice/z\n"

    assert remote_watch.preview_heads(listed) == {"preview/alice/lr": B, "preview/bob/x/y": D}


def test_the_watch_follows_new_moved_and_deleted_preview_branches(tmp_path: Path) -> None:
    args, known = watch_arguments(tmp_path), remote_watch.Previews()

    entries, changes, problems = known.sync([], {"preview/alice/lr": A, "preview/bob/x": B}, args, NOW)
    assert changes == ["preview preview/alice/lr at aaaaaaaaaaaa runs in preview-1",
                       "preview preview/bob/x at bbbbbbbbbbbb runs in preview-2"]  # fmt: skip
    same, unchanged, _ = known.sync(entries, {"preview/alice/lr": A, "preview/bob/x": B}, args, NOW + 60)
    moved, _, _ = known.sync(same, {"preview/alice/lr": C, "preview/bob/x": B}, args, NOW + 120)
    gone, gone_changes, _ = known.sync(moved, {"preview/alice/lr": C}, args, NOW + 180)

    assert problems == [] and unchanged == [] and same == entries
    assert [(e.slot, e.branch, e.commit, e.pushed_by, e.pushed) for e in moved] == [
        ("preview-1", "preview/alice/lr", C, "alice", NOW + 120),  # the person from the name
        ("preview-2", "preview/bob/x", B, "bob", NOW),
    ]
    assert [e.branch for e in gone] == ["preview/alice/lr"]
    assert gone_changes == ["preview removed: preview/bob/x (deleted on the remote)"]


def test_the_watch_gives_no_slot_over_the_limit_or_to_a_bad_name_and_says_so_once(tmp_path: Path) -> None:
    """The platform cannot refuse a push to a remote outside it: such a preview gets no slot."""
    args, known = watch_arguments(tmp_path), remote_watch.Previews()
    heads = {"preview/alice/a": A, "preview/alice/b": B, "preview/alice/c": C, "preview/Bob/x": D}

    entries, _, problems = known.sync([], heads, args, NOW)
    _, _, again = known.sync(entries, heads, args, NOW + 2)

    assert [e.branch for e in entries] == ["preview/alice/a", "preview/alice/b"]
    assert [(branch, commit) for branch, commit, _ in problems] == [
        ("preview/Bob/x", D),
        ("preview/alice/c", C),
    ]
    assert "is not a hub name" in problems[0][2]
    assert "preview/alice/c at cccccccccccc is not run: you have 2 previews, the limit is 2" in problems[1][2]
    assert again == []  # said once


def test_watch_previews_writes_the_registry_and_the_refusal_to_the_status_file(tmp_path: Path) -> None:
    args = arguments(tmp_path, preview_slots=3, status_file=tmp_path / "push-status" / "status.json")
    listed = f"{A}\trefs/heads/main\n{B}\trefs/heads/preview/alice/lr\n{C}\trefs/heads/preview/alice/x_y\n"

    remote_watch.watch_previews(args, listed, remote_watch.Previews())

    assert registry(args) == [("preview-1", "preview/alice/lr", B, "alice")]
    status = json.loads(args.status_file.read_text())
    assert status["branch"] == "preview/alice/x_y" and status["commit"] == C and status["state"] == "unknown"
    assert "'x_y' in preview/alice/x_y is not a topic" in status["lines"][0]


def test_the_watch_frees_the_slot_of_an_untouched_preview_until_its_next_commit(tmp_path: Path) -> None:
    """The branch is not the platform's to delete there: its slot is freed, and it stays
    freed while the branch stays at that commit."""
    args, known = watch_arguments(tmp_path), remote_watch.Previews()
    entries, _, _ = known.sync([], {"preview/alice/lr": A}, args, NOW)

    expired, changes, _ = known.sync(entries, {"preview/alice/lr": A}, args, NOW + 8 * DAY)
    still, _, _ = known.sync(expired, {"preview/alice/lr": A}, args, NOW + 9 * DAY)
    pushed_again, _, _ = known.sync(still, {"preview/alice/lr": B}, args, NOW + 10 * DAY)

    assert expired == [] and still == []
    assert changes == [
        "preview removed: preview/alice/lr (no push for 7 days; the branch stays on the remote: "
        "delete it there, or push to it to run it again)"
    ]
    assert [(e.branch, e.commit, e.pushed) for e in pushed_again] == [("preview/alice/lr", B, NOW + 10 * DAY)]
