"""The local remote's pre-receive and post-receive hooks: what a `git push` to the tracked
branch is told, in its own output (git prints it after `remote:`).

    pre-receive   a push to the tracked branch by someone --pushers does not name
                  (MLOPS_IDE_TRACKED_BRANCH_PUSHERS) is refused, naming who may; other
                  branches take anyone's, but none is rewritten or deleted (the remote
                  keeps every commit). A preview branch, `preview/<person>/<topic>`
                  (mlops_ide/portable/previews.py), is its person's: only they, a hub
                  admin or a push in the folder itself may push, force-push or delete
                  it, and only those who may push the tracked branch (a preview runs as
                  the pipeline); one more than --previews-per-person is refused with the
                  list of theirs. The pushed commit's DAG folder (--dags-folder:
                  MLOPS_IDE_DAGS_FOLDER, `dags` by default, `.` the whole repository) goes to
                  the DAG check's sandbox (mlops_ide/in_airflow/dag_sandbox.py), which imports
                  each DAG file as Airflow would; any problem refuses the push, one line each:
                  `dags/<file>.py:<line>: <error>`. The branch stays as it was. `git push -o
                  skip-dag-check` lets it through, and says so: for hub admins (the git service
                  says who is, REMOTE_USER_IS_ADMIN) and pushes made in the folder itself only.
    post-receive  the push check moves Airflow to the pushed commit and waits (a few
                  seconds at most) to say, for each DAG file the push touched, `live:`,
                  `removed:` or its import error; for a push of code outside the DAG folder,
                  `next runs use <commit>`. A preview's push or deletion is sent on
                  too (the push check gives it a slot and answers `preview: <dag id>
                  (paused) <link>`), and preview branches nobody pushed to for
                  --preview-days (their reflog says when) are deleted here.

Run by git (the git service's account, or whoever pushes to the folder directly) with the
arguments the platform wrote into the hook (`python -P -m mlops_ide.portable.push_hook`, the
platform's copy of its code as PYTHONPATH); standard library only. Neither hook holds a
password: the sandbox and the push check listen on Unix sockets that only the git service's
account and root can reach. When nothing listens there (no socket, or one nobody listens on:
Airflow is off), the push goes through unchecked and the output says so; a sandbox busy with
others' pushes is waited for (up to CHECK_SECONDS), and a check that fails otherwise refuses
the push.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fnmatch
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time

from mlops_ide.portable import dag_folder, previews

ZERO = "0" * 40
CHECK_SECONDS = 60.0  # a check's deadline, waiting for the sandbox included
MAX_DAGS_BYTES = 20 * 2**20  # the DAG folder holds code; data and models belong elsewhere
SKIP_OPTION = "skip-dag-check"


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], check=True, capture_output=True).stdout


def try_git(*args: str) -> subprocess.CompletedProcess:
    """git whose failure is an answer (not an ancestor, no such file, a ref that moved)."""
    return subprocess.run(["git", *args], capture_output=True)


class Unreachable(OSError):
    """Nothing listens on the socket (Airflow is off): what connecting failed with."""


class Busy(OSError):
    """The listener's queue stayed full until the deadline: it takes one request at a time
    (the sandbox checks one push after the other), so others' pushes are ahead of this one."""


BUSY_RETRY_SECONDS = 0.2


def ask(socket_path: str, request: dict, timeout: float, waiting: str = "") -> dict:
    """One request to the push check (or the sandbox), one answer: a JSON line each way.
    Unreachable when nothing listens (no socket, or one nobody listens on); a full queue
    (EAGAIN) is tried again until `timeout`, saying `waiting` once, then Busy; a listener
    that fails midway is another OSError or a ValueError."""
    with connected(socket_path, time.monotonic() + timeout, waiting) as connection:
        connection.settimeout(timeout)
        connection.sendall(json.dumps(request).encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = connection.recv(65536)
            if not chunk:
                break
            answer += chunk
    return json.loads(answer)


def connected(socket_path: str, deadline: float, waiting: str) -> socket.socket:
    """A socket connected to `socket_path`. Only ENOENT and ECONNREFUSED mean nobody listens:
    any other error (EAGAIN from a full queue above all) must not let a push through unchecked."""
    while True:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(max(deadline - time.monotonic(), BUSY_RETRY_SECONDS))
        try:
            connection.connect(socket_path)
            return connection
        except (FileNotFoundError, ConnectionRefusedError) as error:
            connection.close()
            raise Unreachable(error.__class__.__name__) from None
        except BlockingIOError:
            connection.close()
            if time.monotonic() >= deadline:
                raise Busy("its queue stayed full") from None
            if waiting:
                say(waiting)
                waiting = ""
            time.sleep(BUSY_RETRY_SECONDS)
        except OSError:
            connection.close()
            raise


def dag_files(commit: str, folder: str) -> dict[str, str]:
    """The files of the DAG folder at `commit`, repository path -> base64 content (regular
    files only); their sizes are added up from git's tree first, so a huge file is refused
    unread."""
    if not has_dags(commit, folder):
        return {}
    listed = names(git("ls-tree", "-r", "-l", "-z", commit, "--", *paths(folder)))
    sizes = [line.split(None, 4)[3] for line in listed]
    if sum(int(size) for size in sizes if size.isdigit()) > MAX_DAGS_BYTES:
        raise TooBig(
            f"the DAG folder ({dag_folder.prefix(folder) or 'the whole repository'}) is over "
            f"{MAX_DAGS_BYTES // 2**20} MB at this commit"
        )
    files = {}
    archive = git("archive", "--format=tar", commit, "--", *paths(folder))
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        for member in tar:
            if member.isfile():
                files[member.name] = base64.b64encode(tar.extractfile(member).read()).decode()
    return files


def names(listing: bytes) -> list[str]:
    """git's NUL-separated (-z) list as text: a name that is not UTF-8 keeps its bytes
    (surrogateescape, as os.fsdecode; os.fsencode gives them back to git)."""
    return [os.fsdecode(name) for name in listing.split(b"\0")[:-1]]


def paths(folder: str) -> list[str]:
    """git's pathspec for the DAG folder: nothing (everything) for the whole repository."""
    return [] if folder == dag_folder.WHOLE_REPOSITORY else [folder]


def has_dags(commit: str, folder: str) -> bool:
    return bool(git("ls-tree", "--name-only", commit, "--", *paths(folder)).strip())


class TooBig(ValueError):
    pass


def ref_updates() -> list[tuple[str, str, str]]:
    """(old, new, ref) of each ref this push updates: git gives the hook one line each."""
    return [tuple(line.split(" ", 2)) for line in os.fsdecode(sys.stdin.buffer.read()).splitlines()]


def tracked(updates: list[tuple[str, str, str]], branch: str) -> list[tuple[str, str]]:
    """(old, new) of the tracked branch's update; a deletion is left to git, which refuses it."""
    return [(old, new) for old, new, ref in updates if ref == f"refs/heads/{branch}" and new != ZERO]


def refused_refs(updates: list[tuple[str, str, str]], branch: str) -> list[str]:
    """Why a ref of this push is refused: branches are git's to guard (no force-push, no
    deletion); tags may be added, never moved or deleted, and none may shadow a branch
    (Airflow's clone would take a tag `origin/main` for the branch, a tag `preview/alice/lr`
    for alice's preview, or one named as an existing branch for it); nothing else is taken."""
    problems = []
    for old, _, ref in updates:
        if ref.startswith("refs/heads/"):
            continue
        name = ref.removeprefix("refs/tags/")
        if not ref.startswith("refs/tags/"):
            problems.append(f"{ref}: only branches and tags are taken here")
        elif old != ZERO:
            problems.append(f"tag {name}: tags are kept as they are; make a new one")
        elif (
            name.startswith(("origin/", "refs/", "heads/", "remotes/", previews.BRANCH_PREFIX))
            or name in (branch, "HEAD", previews.BRANCH_PREFIX.rstrip("/"))
            or is_branch(name)
        ):
            problems.append(f"tag {name}: the name would shadow a branch; choose another")
    return problems


def is_branch(name: str) -> bool:
    return try_git("show-ref", "--verify", "--quiet", f"refs/heads/{name}").returncode == 0


def refused_branches(updates: list[tuple[str, str, str]], args: argparse.Namespace) -> list[str]:
    """Why a branch update of this push is refused. Branches outside preview/ are kept: no
    deletion, no rewriting (git's receive.denyDeletes / denyNonFastForwards would say so, but
    they hold for every branch, and a preview is its person's to force-push and delete)."""
    problems = []
    for old, new, ref in updates:
        branch = ref.removeprefix("refs/heads/")
        if not ref.startswith("refs/heads/"):
            continue
        if previews.is_preview_branch(branch) or branch == previews.BRANCH_PREFIX.rstrip("/"):
            problems += preview_problems(branch, new, args)
        elif new == ZERO:
            problems.append(f"branch {branch}: deletion prohibited: the remote keeps every branch")
        elif old != ZERO and not is_ancestor(old, new):
            problems.append(
                f"branch {branch}: non-fast-forward: it would drop commits the remote keeps; "
                "git pull --rebase, then push again"
            )
    return problems + over_the_limit(updates, args)


def is_ancestor(old: str, new: str) -> bool:
    return try_git("merge-base", "--is-ancestor", old, new).returncode == 0


def preview_problems(branch: str, new: str, args: argparse.Namespace) -> list[str]:
    """A preview branch must name a preview, and its person (or an admin) push it."""
    if args.preview_slots == 0 and new != ZERO:  # one left from before may still be deleted
        return [
            f"{branch}: previews are off on this platform (MLOPS_IDE_PREVIEW_SLOTS=0); push another branch"
        ]
    try:
        preview = previews.parse_branch(branch)
    except previews.BadPreview as error:
        return [str(error)]
    if not may_change_preview(preview.person):
        yours = f"{previews.BRANCH_PREFIX}{os.environ['REMOTE_USER']}/<topic>"
        return [
            f"{branch} is {preview.person}'s preview: only they or a hub admin may change it; push to {yours}"
        ]
    return []


def may_change_preview(person: str) -> bool:
    """The person the preview names, a hub admin (the git service says who is), or whoever
    pushes in the remote's folder itself (no REMOTE_USER)."""
    if "REMOTE_USER" not in os.environ or os.environ.get("REMOTE_USER_IS_ADMIN") == "1":
        return True
    return os.environ["REMOTE_USER"] == person


def preview_updates(updates: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """(old, new, branch) of the preview branches this push changes (names that parse)."""
    found = []
    for old, new, ref in updates:
        branch = ref.removeprefix("refs/heads/")
        if ref.startswith(previews.REF_PREFIX):
            with contextlib.suppress(previews.BadPreview):
                previews.parse_branch(branch)
                found.append((old, new, branch))
    return found


def preview_branches() -> dict[str, str]:
    """The remote's preview branches (name -> commit): what counts towards the limit."""
    listed = os.fsdecode(git("for-each-ref", "--format=%(objectname) %(refname)", previews.REF_PREFIX))
    return {
        ref.removeprefix("refs/heads/"): commit
        for commit, _, ref in (line.partition(" ") for line in listed.splitlines())
    }


def over_the_limit(updates: list[tuple[str, str, str]], args: argparse.Namespace) -> list[str]:
    """A person's new previews beyond --previews-per-person (counted as the push leaves them)."""
    changed = preview_updates(updates)
    created = {branch for old, new, branch in changed if old == ZERO and new != ZERO}
    if not created:
        return []
    deleted = {branch for _, new, branch in changed if new == ZERO}
    existing = set(preview_branches())
    problems = []
    for person in sorted({previews.parse_branch(branch).person for branch in created}):
        own = sorted(b for b in existing if b.startswith(f"{previews.BRANCH_PREFIX}{person}/"))
        after = (set(own) - deleted) | {b for b in created if previews.parse_branch(b).person == person}
        if len(after) > args.previews_per_person:
            listed = ", ".join(own) or "none yet"
            problems.append(
                f"{person} would have {len(after)} previews, the limit is {args.previews_per_person} "
                f"(now: {listed}): delete one with `git push origin :{(own or sorted(after))[0]}`"
            )
    return problems


def push_options() -> list[str]:
    return [
        os.environ.get(f"GIT_PUSH_OPTION_{i}", "")
        for i in range(int(os.environ.get("GIT_PUSH_OPTION_COUNT", "0")))
    ]


def say(line: str) -> None:
    print(line, flush=True)


def may_skip() -> bool:
    """Only a hub admin may push past the check, or whoever pushes in the remote's folder
    itself (no REMOTE_USER: root, or the git service's account). The git service sets
    REMOTE_USER_IS_ADMIN from the hub's answer; no header of the request reaches it."""
    return "REMOTE_USER" not in os.environ or os.environ.get("REMOTE_USER_IS_ADMIN") == "1"


def who_may_skip() -> str:
    admins = [name for name in os.environ.get("HUB_ADMIN_NAMES", "").split(",") if name]
    return f"ask one of the hub's admins ({', '.join(admins)})" if admins else "ask a hub admin"


ADMINS = "admins"  # in --pushers: every hub admin


def may_push_tracked(pushers: list[str]) -> bool:
    """Whether this pusher may update the tracked branch (Airflow runs what it holds as the
    pipeline): anyone when no one is named; else a named hub login, a hub admin when
    `admins` is named (the git service says who is), or whoever pushes in the remote's
    folder itself (no REMOTE_USER: root, or the git service's account)."""
    if not pushers or "REMOTE_USER" not in os.environ:
        return True
    if os.environ["REMOTE_USER"] in pushers:
        return True
    return ADMINS in pushers and os.environ.get("REMOTE_USER_IS_ADMIN") == "1"


def who_may_push(pushers: list[str]) -> str:
    people = [name for name in pushers if name != ADMINS]
    if ADMINS in pushers:
        admins = [name for name in os.environ.get("HUB_ADMIN_NAMES", "").split(",") if name]
        people.append(f"the hub's admins ({', '.join(admins)})" if admins else "the hub's admins")
    return " and ".join(filter(None, [", ".join(people[:-1]), people[-1]]))


def pre_receive(args: argparse.Namespace) -> int:
    updates = ref_updates()
    pusher = os.environ.get("REMOTE_USER", "local")
    bad_refs = refused_refs(updates, args.branch) + refused_branches(updates, args)
    if bad_refs:
        say("mlops-ide: push refused:")
        for problem in bad_refs:
            say(f"  {problem}")
        return 1
    pushers = [name for name in args.pushers.split(",") if name]
    if tracked(updates, args.branch) and not may_push_tracked(pushers):
        say(f"mlops-ide: push refused: only {who_may_push(pushers)} may push to {args.branch}")
        say(f"  push to a branch of your own (git push origin HEAD:{pusher}-work) and ask them to take it")
        return 1
    # deleting one's preview takes nothing from anyone: also for those no longer named
    if any(new != ZERO for _, new, _ in preview_updates(updates)) and not may_push_tracked(pushers):
        who = who_may_push(pushers)
        say(f"mlops-ide: push refused: a preview runs as the pipeline, so only {who} may push one")
        return 1
    # a preview's DAG folder is checked as the tracked branch's is: Airflow parses both
    to_run = tracked(updates, args.branch) + [
        (old, new) for old, new, _ in preview_updates(updates) if new != ZERO
    ]
    for old, new in to_run:
        if SKIP_OPTION in push_options():
            if not may_skip():
                say(f"mlops-ide: push refused: only a hub admin may skip the DAG check ({SKIP_OPTION}):")
                say(f"  {who_may_skip()}, or fix what the check says (push without -o {SKIP_OPTION})")
                return 1
            say(f"mlops-ide: DAG check skipped ({SKIP_OPTION}); Airflow will say what breaks")
            notify(args, {"skipped": new, "pusher": pusher})
            return 0
        try:
            to_check = dag_files_to_check(old, new, args.dags_folder)
            if to_check == []:
                say("mlops-ide: no DAG file added or changed: nothing to check")
                continue
            problems, files, summary = check(args, new, pusher, to_check)
            # A DAG file this push did not touch that would not load before it either is not
            # this push's doing: said, not refused (it came in with the skip option, say).
            untouched = set(files) - set(changed_paths(old, new))
            before = set(check(args, old, pusher)[1]) & untouched if untouched and old != ZERO else set()
        except TooBig as problem:
            say(f"mlops-ide: push refused: {problem}: keep data and models out of the DAG folder")
            return 1
        except Busy:  # the sandbox is there, checking others' pushes: never passed unchecked
            waited = f"{CHECK_SECONDS:g} s waited"
            say(f"mlops-ide: push refused: the DAG check is busy with other pushes ({waited})")
            say("  push again in a moment")
            return 1
        except Unreachable as problem:  # Airflow is off: the push is not held back
            say(f"mlops-ide: DAG check unavailable ({problem}); pushed unchecked")
            notify(args, {"skipped": new, "pusher": pusher, "why": f"check unavailable: {problem}"})
            return 0
        except (OSError, ValueError, subprocess.SubprocessError) as problem:
            # anything else is this push's or the check's fault: refused, never passed unchecked
            say(f"mlops-ide: push refused: the DAG check failed on this push ({problem!r})")
            say(f"  tell a hub admin (or, in an emergency, a hub admin: git push -o {SKIP_OPTION})")
            return 1
        refused = [problem for problem, file in zip(problems, files, strict=True) if file not in before]
        for problem, file in zip(problems, files, strict=True):
            if file in before:
                say(f"mlops-ide: already broken before this push: {problem}")
        if refused:
            say(f"mlops-ide: push refused: {len(refused)} DAG file(s) would not load in Airflow")
            for problem in refused:  # its lines: the problem, then what Airflow 3 changed there
                say("  " + problem.replace("\n", "\n  "))
            say(f"  fix and push again (or, in an emergency, a hub admin: git push -o {SKIP_OPTION})")
            return 1
        say(f"mlops-ide: DAG check passed ({summary})")
    return 0


def check(
    args: argparse.Namespace, commit: str, pusher: str, only: list[str] | None = None
) -> tuple[list[str], list[str], str]:
    """The push check's problem lines for `commit`, the DAG file of each, and a summary."""
    request = {"check": commit, "pusher": pusher, "files": dag_files(commit, args.dags_folder), "only": only}
    waiting = "mlops-ide: the DAG check is busy with other pushes: waiting for it"
    answer = ask(args.check_socket, request, CHECK_SECONDS, waiting)
    problems, files = answer.get("problems", []), answer.get("broken", [])
    if len(files) != len(problems):
        raise ValueError("the push check answered problems without their files")
    return problems, files, answer.get("summary", "")


def dag_files_to_check(old: str, new: str, folder: str) -> list[str] | None:
    """The DAG files (the .py files at the top of the DAG folder) the push added or changed,
    when nothing else in the folder changed; None (every DAG file) for a new branch or a
    change to what DAG files share (a helper module, a sub-folder, .airflowignore)."""
    if old == ZERO:
        return None
    changed = diff_names(old, new, "d", folder)
    deleted = diff_names(old, new, "D", folder)
    in_folder = {path: dag_folder.in_folder(path, folder) or "" for path in changed + deleted}
    shared = [path for path, name in in_folder.items() if "/" in name or not name.endswith(".py")]
    ignore_file = dag_folder.in_repository(".airflowignore", folder)
    ignored = [line.strip() for line in file_at(new, ignore_file).splitlines() if line.strip()]
    helpers = [path for path, name in in_folder.items() if any(fnmatch.fnmatch(name, i) for i in ignored)]
    return None if shared or helpers else changed


def diff_names(old: str, new: str, diff_filter: str, folder: str) -> list[str]:
    """The repository paths in the DAG folder the push changed (git's diff filter)."""
    diff = git(
        "diff",
        "--name-only",
        "-z",
        "--no-renames",
        f"--diff-filter={diff_filter}",
        old,
        new,
        "--",
        *paths(folder),
    )
    return names(diff)


def file_at(commit: str, path: str) -> str:
    """A file's text at `commit`, empty when it has none."""
    shown = try_git("show", f"{commit}:{path}")
    return shown.stdout.decode(errors="replace") if shown.returncode == 0 else ""


def changed_paths(old: str, new: str) -> list[str]:
    if old == ZERO:
        return []
    return names(git("diff", "--name-only", "-z", "--no-renames", old, new))


def notify(args: argparse.Namespace, request: dict) -> None:
    """Tell the push check of something for its log; no answer needed."""
    with contextlib.suppress(OSError, ValueError):
        ask(args.socket, request, 5)


def post_receive(args: argparse.Namespace) -> int:
    """Each stage on its own: one that fails (a path git cannot show, say) is said and skips
    nothing else; the push is in already."""
    updates = ref_updates()
    pusher = os.environ.get("REMOTE_USER", "local")
    in_stage("telling what is live", report_live, args, updates)
    for _, new, branch in preview_updates(updates):
        commit = None if new == ZERO else new
        in_stage(f"telling Airflow of {branch}", report_preview, args, branch, commit, pusher)
    just_pushed = {branch for _, _, branch in preview_updates(updates)}
    for branch in in_stage("expiring previews", expire_previews, args.preview_days, just_pushed) or []:
        say(f"mlops-ide: {branch}: nobody pushed to it for {args.preview_days:g} days: deleted")
        in_stage(f"telling Airflow of {branch}", report_preview, args, branch, None, "expiry")
    # at every push: a preview whose deletion never reached the push check loses its slot now
    in_stage("listing previews", notify, args, {"previews_on_remote": remote_previews(), "pusher": pusher})
    return 0


def in_stage(what: str, stage, *arguments):
    """stage(*arguments), or None after saying it failed."""
    try:
        return stage(*arguments)
    except Exception as error:  # a hook's stage: said, and the next one runs
        say(f"mlops-ide: {what} failed ({error!r}); the push is in")
        return None


def remote_previews() -> dict:
    """The remote's preview branches and when they were listed: the push check frees the slot
    of any other preview pushed before then (previews.reconciled)."""
    listed = time.time()  # before listing: a branch created meanwhile is in the list or newer
    return {"branches": sorted(preview_branches()), "listed": listed}


def report_preview(args: argparse.Namespace, branch: str, commit: str | None, pusher: str) -> None:
    """Tell the push check of a preview's push (commit) or deletion (None), with the remote's
    preview branches (a deletion frees the slot only if the branch is still gone); say its answer."""
    files = [] if commit is None else dag_files_at(commit, args.dags_folder)
    request = {
        "preview": {
            "branch": branch,
            "commit": commit,
            "pushed_by": pusher,
            "files": files,
            "remote": remote_previews(),
        },
        "pusher": pusher,
    }
    tell_push_check(args, request, f"cannot tell Airflow of {branch} ({{why}}); ask an admin")


MAX_PREVIEW_FILES = 200  # beyond, the push check waits for the first DAG only


def dag_files_at(commit: str, folder: str) -> list[str]:
    """The files of the DAG folder at `commit` that Airflow opens (repository paths): what a
    preview's answer waits for, a verdict on each."""
    where = [] if folder == dag_folder.WHOLE_REPOSITORY else ["--", folder]
    paths = names(git("ls-tree", "-r", "-z", "--name-only", commit, *where))
    ignore = file_at(commit, dag_folder.in_repository(".airflowignore", folder))
    found = []
    for path in paths:
        inside = dag_folder.in_folder(path, folder)
        if inside is None or not path.endswith(".py"):
            continue
        if dag_folder.airflow_parses(inside, ignore, git("show", f"{commit}:{path}")):
            found.append(path)
        if len(found) > MAX_PREVIEW_FILES:
            return []
    return found


def last_pushed(branch: str) -> float:
    """When the remote's branch last moved: its reflog's newest entry (core.logAllRefUpdates),
    else its commit's date."""
    ref = f"refs/heads/{branch}"
    shown = try_git("reflog", "show", "--date=unix", "-n1", "--format=%gd", ref).stdout.decode().strip()
    if shown.endswith("}") and "@{" in shown and shown.rsplit("@{", 1)[1][:-1].isdigit():
        return float(shown.rsplit("@{", 1)[1][:-1])
    return float(git("log", "-1", "--format=%ct", f"refs/heads/{branch}").decode().strip() or 0)


def expire_previews(days: float, keep: set[str]) -> list[str]:
    """Delete the preview branches nobody pushed to for `days` (each only if it has not moved
    meanwhile), but those in `keep` (this push's); the branches deleted."""
    now = time.time()
    gone = []
    for branch, commit in preview_branches().items():
        if branch in keep or now - last_pushed(branch) <= days * 86400:
            continue
        if try_git("update-ref", "-d", f"refs/heads/{branch}", commit).returncode == 0:  # unmoved meanwhile
            gone.append(branch)
    return gone


def tell_push_check(args: argparse.Namespace, request: dict, unanswered: str) -> None:
    """Send the push check one request and say its answer's lines; when it does not answer,
    `unanswered` (its `{why}` the error's kind)."""
    try:
        answer = ask(args.socket, request, 30)
    except (OSError, ValueError) as problem:
        say("mlops-ide: " + unanswered.format(why=problem.__class__.__name__))
        return
    for line in answer.get("lines", []):
        say(f"mlops-ide: {line}")


def report_live(args: argparse.Namespace, updates: list[tuple[str, str, str]]) -> None:
    for old, new in tracked(updates, args.branch):
        changed = []
        if old != ZERO:
            ignore = file_at(new, dag_folder.in_repository(".airflowignore", args.dags_folder))
            listed = names(git("diff", "--name-status", "-z", "--no-renames", old, new))
            for status, path in zip(listed[::2], listed[1::2], strict=True):  # -z: status, path
                inside = dag_folder.in_folder(path, args.dags_folder)
                content = None if status[0] == "D" else git("show", f"{new}:{path}")
                # a file Airflow never opens gets no verdict: not waited for
                if (
                    inside is None
                    or not path.endswith(".py")
                    or dag_folder.airflow_parses(inside, ignore, content)
                ):
                    changed.append([status[0], path])
        request = {"live": new, "changed": changed, "pusher": os.environ.get("REMOTE_USER", "local")}
        tell_push_check(args, request, "cannot tell what is live ({why}); Airflow's UI will")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("hook", choices=("pre-receive", "post-receive"))
    parser.add_argument("--socket", required=True, help="the push check's Unix socket (reports)")
    parser.add_argument("--check-socket", required=True, help="the DAG check sandbox's Unix socket")
    parser.add_argument("--branch", required=True, help="the tracked branch")
    parser.add_argument(
        "--dags-folder", type=dag_folder.parse, default=dag_folder.DEFAULT, help="the repository's DAG folder"
    )
    parser.add_argument(
        "--pushers", default="", help="who may push the tracked branch: hub names, `admins`; empty: anyone"
    )
    parser.add_argument(
        "--preview-slots", type=int, default=6, help="Airflow's preview slots; 0: previews off"
    )
    parser.add_argument(
        "--previews-per-person", type=int, default=3, help="preview branches one person may have"
    )
    parser.add_argument(
        "--preview-days", type=float, default=7, help="a preview nobody pushed to this long goes"
    )
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(errors="backslashreplace")  # a file name that is not UTF-8 is said, as \xff
    return pre_receive(args) if args.hook == "pre-receive" else post_receive(args)


if __name__ == "__main__":
    sys.exit(main())
