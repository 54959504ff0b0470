"""A remote outside the platform (MLOPS_IDE_REPO_URL: the team's repository on GitHub, any git
URL) has no hooks of ours: this watches its tracked branch and, on a new commit, does what the
push check does after a push to the local remote (push_check.live: the bundle moved now, the
verdict on the DAG files the commit changed), and writes the verdict to the status file
`mlops-ide dag status` reads.

    PYTHONPATH=LIB <airflow venv>/bin/python -P -m mlops_ide.in_airflow.remote_watch \
        --git-conn-id mlops_ide_pipelines --mirror FOLDER --every 2 \
        --airflow-url URL --passwords-file FILE --bundle pipelines --dag platform_smoke_test \
        --dags-folder dags --status-file FILE --branch main

Every --every seconds one `git ls-remote <url> refs/heads/<branch> refs/heads/preview/*` (one
round trip, whoever pushed: a laptop, GitHub's web editor, a merged pull request; no endpoint
anyone could call), authenticated as Airflow's bundle is: Airflow's own GitHook on the
bundle's connection, whose configure_hook_env() hands the operator's token to git through a
credential helper (never in argv or a URL). A new commit is fetched into a mirror of its own
(--mirror) to name the files it changed. Runs beside Airflow as the pipeline's account, like
the push check; it runs no pushed code. A poll that fails (network, auth) is logged once per
kind and tried again.

The same listing names the remote's preview branches (`preview/<person>/<topic>`,
mlops_ide/portable/previews.py): a new or moved one takes or keeps a slot in the registry
(--previews-file), a deleted one frees it, one nobody pushed to for --preview-days (since this
watch saw its commit) loses it until its next commit. The platform cannot refuse a push
there: a preview over a limit gets no slot, which the log and the status file say.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from mlops_ide.in_airflow import push_check
from mlops_ide.in_airflow.push_check import log
from mlops_ide.portable import dag_folder, previews, push_status

GIVE_UP_AFTER = 180.0  # seconds of "still parsing" / "cannot tell" before a commit's verdict stays so
GIT_TIMEOUT = 30.0
UNSETTLED = ("pending", "unknown")


class PollError(Exception):
    """A poll that failed; `kind` groups failures that are logged once."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def failure_kind(stderr: str) -> str:
    """What went wrong, in a word an operator can act on."""
    text = stderr.lower()
    if any(word in text for word in ("authentication", "401", "403", "could not read username", "denied")):
        return "auth"
    if any(word in text for word in ("resolve host", "connect", "timed out", "unreachable", "reset")):
        return "network"
    if "not found" in text or "does not appear to be a git repository" in text:
        return "repository"
    return "git"


def head_of(ls_remote_output: str, branch: str) -> str | None:
    """The branch's commit in `git ls-remote` output (its pattern also matches longer refs)."""
    for line in ls_remote_output.splitlines():
        commit, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}" and len(commit) == 40:
            return commit
    return None


def preview_heads(ls_remote_output: str) -> dict[str, str]:
    """branch -> commit of each preview branch in `git ls-remote` output (any name under preview/)."""
    heads = {}
    for line in ls_remote_output.splitlines():
        commit, _, ref = line.partition("\t")
        if ref.startswith(previews.REF_PREFIX) and len(commit) == 40:
            heads[ref.removeprefix("refs/heads/")] = commit
    return heads


class Previews:
    """What the watch knows of the remote's previews beyond the registry: the commits it let
    expire (not run again until the branch moves) and the problems it already said."""

    def __init__(self) -> None:
        self.expired: dict[str, str] = {}
        self.said: set[str] = set()

    def sync(
        self, entries: list[previews.Entry], heads: dict[str, str], args: argparse.Namespace, now: float
    ) -> tuple[list[previews.Entry], list[str], list[tuple[str, str, str]]]:
        """The registry after this listing, what changed (logged) and what could not be run,
        (branch, commit, why), each once (logged, and written to the status file)."""
        changes, problems = [], []
        for entry in entries:
            if entry.branch not in heads:
                entries = previews.removed(entries, entry.branch)
                changes.append(f"preview removed: {entry.branch} (deleted on the remote)")
        for entry in previews.expired(entries, args.preview_days, now):
            entries = previews.removed(entries, entry.branch)
            self.expired[entry.branch] = entry.commit
            changes.append(
                f"preview removed: {entry.branch} (no push for {args.preview_days:g} days; "
                "the branch stays on the remote: delete it there, or push to it to run it again)"
            )
        self.expired = {
            branch: commit for branch, commit in self.expired.items() if heads.get(branch) == commit
        }
        for branch, commit in sorted(heads.items()):
            known = previews.of_branch(entries, branch)
            if self.expired.get(branch) == commit or (known is not None and known.commit == commit):
                continue
            try:
                person = previews.parse_branch(branch).person
                entries, entry = previews.pushed(
                    entries, branch, commit, person, args.preview_slots, args.previews_per_person, now
                )
            except (previews.BadPreview, previews.NoSlot) as problem:
                said = f"{branch} at {commit[:12]} is not run: {problem}"
                if said not in self.said:
                    self.said.add(said)
                    problems.append((branch, commit, said))
                continue
            changes.append(f"preview {branch} at {commit[:12]} runs in {entry.slot}")
        return entries, changes, problems


def watch_previews(args: argparse.Namespace, listed: str, known: Previews) -> None:
    """Bring the registry in line with the remote's preview branches (if previews are on)."""
    if args.previews_file is None or args.preview_slots == 0:
        return
    try:
        entries = previews.read(args.previews_file)
        updated, changes, problems = known.sync(entries, preview_heads(listed), args, time.time())
        if updated != entries:
            previews.write(args.previews_file, updated)
    except (OSError, ValueError) as error:
        log(f"cannot update {args.previews_file}: {error!r}")
        return
    for line in changes:
        log(line)
    for branch, commit, why in problems:  # also what `mlops-ide dag status` shows users
        log(why)
        if args.status_file is not None:
            with contextlib.suppress(OSError, ValueError):
                push_status.write(args.status_file, push_status.make(branch, commit, "unknown", [why]))


class Remote:
    """The remote as Airflow's bundle reaches it: a git command runs inside the hook's
    environment (its credential helper), built anew for each command (a GitHub App token
    is minted as needed)."""

    def __init__(self, git_conn_id: str, branch: str, mirror: Path):
        self.git_conn_id, self.branch, self.mirror = git_conn_id, branch, mirror

    def git(self, *args: str, cwd: Path | None = None) -> str:
        """git with `args`, `{url}` standing for the remote's URL (the hook's, no credential in it)."""
        from airflow.providers.git.hooks.git import GitHook  # Airflow's: imported once, when first asked

        try:
            hook = GitHook(git_conn_id=self.git_conn_id)
        except Exception as error:  # a connection Airflow cannot read: the operator's setting
            raise PollError("connection", f"the git connection {self.git_conn_id}: {error}") from None
        with hook.configure_hook_env():
            try:
                done = subprocess.run(
                    ["git", *[arg.replace("{url}", hook.repo_url) for arg in args]],
                    cwd=cwd,
                    capture_output=True,
                    text=True,
                    timeout=GIT_TIMEOUT,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                raise PollError("network", f"git {args[0]} took over {GIT_TIMEOUT:.0f} s") from None
        if done.returncode:
            message = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise PollError(failure_kind(done.stderr), f"git {args[0]}: {message}")
        return done.stdout

    def listed(self) -> str:
        """The tracked branch and the preview branches, in one round trip."""
        return self.git("ls-remote", "{url}", f"refs/heads/{self.branch}", f"{previews.REF_PREFIX}*")

    def changed(self, old: str | None, new: str, folder: str) -> list[list[str]]:
        """[status, path] of each file `new` changed since `old` (every file of the DAG folder
        when `old` is unknown) that Airflow would parse, fetched into the mirror first."""
        return [
            [status, path]
            for status, path in self.all_changed(old, new, folder)
            if self.parsed(new, path, folder)
        ]

    def parsed(self, commit: str, path: str, folder: str) -> bool:
        """Whether Airflow parses the file at all (else no verdict would ever come for it):
        dag_folder.airflow_parses says."""
        inside = dag_folder.in_folder(path, folder)
        if inside is None or not path.endswith(".py"):
            return True  # not a DAG file: push_check.live leaves it out anyway
        ignore = self.show(commit, dag_folder.in_repository(".airflowignore", folder)) or b""
        return dag_folder.airflow_parses(inside, ignore.decode(errors="replace"), self.show(commit, path))

    def show(self, commit: str, path: str) -> bytes | None:
        """A file of `commit` in the mirror; None when it has none there (deleted)."""
        done = subprocess.run(
            ["git", "-C", str(self.mirror), "show", f"{commit}:{path}"], capture_output=True
        )
        return done.stdout if done.returncode == 0 else None

    def has(self, commit: str) -> bool:
        done = subprocess.run(
            ["git", "-C", str(self.mirror), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True
        )
        return done.returncode == 0

    def all_changed(self, old: str | None, new: str, folder: str) -> list[list[str]]:
        if not (self.mirror / "HEAD").exists():
            subprocess.run(["git", "init", "--quiet", "--bare", str(self.mirror)], check=True)
        self.git(
            "fetch",
            "--quiet",
            "--no-tags",
            "{url}",
            f"+refs/heads/{self.branch}:refs/watched",
            cwd=self.mirror,
        )
        local = ["git", "-C", str(self.mirror)]
        if old and self.has(old):
            diff = subprocess.run(
                [*local, "diff", "--name-status", "--no-renames", "-z", old, new],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split("\0")
            return [[status[0], path] for status, path in zip(diff[0::2], diff[1::2], strict=False) if path]
        listed = subprocess.run(
            [*local, "ls-tree", "-r", "-z", "--name-only", new, "--", dag_folder.pathspec(folder)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split("\0")
        return [["A", path] for path in listed if path]


class Watch:
    """Which commit of the branch still needs a verdict: a new head, or one whose verdict was
    "still parsing" / "cannot tell" (tried again each poll, until GIVE_UP_AFTER)."""

    def __init__(self, known: str | None):
        self.done = known  # the last commit with a settled verdict (the base of the next diff)
        self.trying: tuple[str, float] | None = None  # an unsettled commit, since when

    def todo(self, head: str | None) -> str | None:
        return None if head is None or head == self.done else head

    def settle(self, commit: str, state: str, now: float) -> bool:
        """Record a verdict on `commit`; True when it is final (written as such)."""
        if state in UNSETTLED:
            if self.trying is None or self.trying[0] != commit:
                self.trying = (commit, now)
            if now - self.trying[1] < GIVE_UP_AFTER:
                return False
        self.done, self.trying = commit, None
        return True


class OnceALog:
    """Failures logged once per kind until a poll succeeds again (not every 2 s)."""

    def __init__(self, say: Callable[[str], None] = log):
        self.say, self.failing = say, set()

    def failed(self, error: PollError) -> None:
        if error.kind not in self.failing:
            self.failing.add(error.kind)
            self.say(f"cannot poll the remote ({error.kind}): {error}; trying again every few seconds")

    def succeeded(self) -> None:
        if self.failing:
            self.say(f"the remote answers again (after: {', '.join(sorted(self.failing))})")
            self.failing.clear()


def last_verdict(args: argparse.Namespace) -> str | None:
    """The commit of the status file's last verdict on this branch, if it is settled."""
    try:
        status = push_status.read(args.status_file)
    except push_status.BadStatus:
        return None
    return status["commit"] if status["branch"] == args.branch and status["state"] not in UNSETTLED else None


def poll_once(
    args: argparse.Namespace, remote: Remote, watch: Watch, failures: OnceALog, known: Previews | None = None
) -> None:
    try:
        listed = remote.listed()
        if known is not None:
            watch_previews(args, listed, known)
        commit = watch.todo(head_of(listed, args.branch))
        failures.succeeded()
        if commit is None:
            return
        changed = remote.changed(watch.done, commit, args.dags_folder)
    except PollError as error:
        failures.failed(error)
        return
    except (OSError, subprocess.CalledProcessError) as error:  # the mirror: this machine's problem
        failures.failed(PollError("mirror", f"{args.mirror}: {error}"))
        return
    first_try = watch.trying is None or watch.trying[0] != commit
    lines = push_check.live(args, commit, changed)
    final = watch.settle(commit, push_check.state_of(lines), time.monotonic())
    push_check.record(args, commit, lines)  # also "still parsing": users see it meanwhile
    if final or first_try:
        log(f"{args.branch} at {commit[:12]}: " + "; ".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--git-conn-id", required=True, help="the bundle's git connection")
    parser.add_argument("--mirror", type=Path, required=True, help="a bare repository of its own")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between polls")
    push_check.add_airflow_arguments(parser)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    remote = Remote(args.git_conn_id, args.branch, args.mirror)
    args.ui_url = (args.ui_url or args.airflow_url).rstrip("/")
    watch, failures, known = Watch(last_verdict(args)), OnceALog(), Previews()
    log(f"watching {args.branch} of the bundle's remote every {args.every:g} s")
    while True:
        started = time.monotonic()
        try:
            poll_once(args, remote, watch, failures, known)
        except Exception as error:  # whatever it is, the next poll comes (said once per kind)
            failures.failed(PollError(type(error).__name__, repr(error)))
        time.sleep(max(0.0, args.every - (time.monotonic() - started)))


if __name__ == "__main__":
    sys.exit(main())
