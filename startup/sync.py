"""Clone the team's pipeline repository into the user's home, or bring it up to date.

    python -m startup.sync [--url URL] [--branch B] [--dest DIR] [--depth N] [--timeout S]

It always fetches, then fast-forwards only, and only where nothing local would be
overwritten and nothing incoming would run by itself in the user's server (held_back.py);
in every other case it leaves the working tree exactly as it was and says why
and what to do (docs/startup-hook.md lists every case). Exit status 0 means the repository
is there (cloned, updated, or rightly left alone); 1 means it could not provide one.
One line goes to stderr for operators, and a short status file goes to the user's home.
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import getpass
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import git

from startup import credential
from startup.held_back import held_back

STATUS_FILE_NAME = "sync-status.md"
CREDENTIAL_HELPER = Path(credential.__file__).resolve()
PARTIAL_CLONE_MARK = ".partial-clone-"


@dataclass
class Outcome:
    """What a run did: ``ok`` is true when the user has a repository to work in."""

    state: str
    ok: bool
    summary: str
    advice: str = ""
    files: list[str] = field(default_factory=list)


class SyncError(Exception):
    """A run that could not provide the repository, or must not touch what is there."""

    def __init__(self, state: str, summary: str, advice: str, ok: bool = False):
        super().__init__(summary)
        self.outcome = Outcome(state, ok, summary, advice)


class GitFailed(Exception):
    def __init__(self, stderr: str, timed_out: bool = False):
        super().__init__(stderr)
        self.stderr = stderr
        self.timed_out = timed_out


def repo_name(url: str) -> str:
    """The folder a clone of ``url`` gets: the URL's last part without ``.git``."""
    tail = re.split(r"[/:]", url.rstrip("/"))[-1]
    name = tail[: -len(".git")] if tail.endswith(".git") else tail
    if not name or name in (".", ".."):
        raise ValueError(f"cannot name a folder after the repository URL {url!r}; pass --dest")
    return name


def remote_key(url: str) -> tuple[str, str]:
    """(host, path) of a git URL, so that spellings of the same remote compare equal."""
    url = url.strip()
    scp = re.match(r"^(?:[^@/]+@)?([^:/]+):(?!//)(.*)$", url)
    if "://" in url:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.port:
            host += f":{parts.port}"
        path = parts.path
    elif scp and not os.path.exists(url):
        host, path = scp.group(1).lower(), scp.group(2)
    else:
        host, path = "", os.path.abspath(os.path.expanduser(url))
    if not host:
        path = os.path.realpath(path)
    path = path.rstrip("/")
    if path.endswith(".git"):
        path = path[: -len(".git")]
    return host, path.lstrip("/") if host else path


def has_password(url: str) -> bool:
    """A password, or over HTTP(S) any user part (a token is often given as the user)."""
    parts = urlsplit(url) if "://" in url else None
    return parts is not None and (
        parts.password is not None or (parts.scheme in ("http", "https") and parts.username is not None)
    )


class RepoSync:
    """One run of the hook against one destination folder."""

    def __init__(self, url: str, branch: str, dest: Path, depth: int | None, timeout: float):
        self.url = url
        self.branch = branch
        self.dest = dest
        self.depth = depth
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.token = credential.read_token()

    # -- the run ------------------------------------------------------------------

    def run(self) -> Outcome:
        if has_password(self.url):
            raise SyncError(
                "bad_url",
                "the repository URL contains a password or token",
                "Remove it from the URL and set MLOPS_IDE_GIT_TOKEN (or "
                "MLOPS_IDE_GIT_TOKEN_FILE) instead, so it never lands in .git/config.",
            )
        self.ensure_credential_helper()
        self.trust_shared_remote()
        with self.lock():
            self.remove_partial_clones()
            if self.needs_clone():
                return self.clone()
            return self.update()

    def needs_clone(self) -> bool:
        if not os.path.lexists(self.dest):
            return True
        if not self.dest.is_dir():
            raise SyncError(
                "not_a_repository",
                f"{self.dest} exists and is not a folder",
                "Move it away (or pass another --dest); it was left as it is.",
            )
        if (self.dest / ".git").exists():
            return False
        if any(self.dest.iterdir()):
            raise SyncError(
                "not_a_repository",
                f"{self.dest} exists, is not empty and is not a git repository",
                f"Nothing in it was touched. Move or rename the folder (for example "
                f"`mv {self.dest} {self.dest}.old`) and restart your server to get a fresh clone.",
            )
        return True

    # -- clone --------------------------------------------------------------------

    def clone(self) -> Outcome:
        """Clone into a hidden sibling folder, then move it into place in one step,
        so that a run killed half-way never leaves a half-made repository at ``dest``."""
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        partial = self.dest.parent / f".{self.dest.name}{PARTIAL_CLONE_MARK}{os.getpid()}"
        args = ["clone", "--branch", self.branch, "--origin", "origin"]
        if self.depth:
            # --no-local: git ignores --depth when it copies a local path's objects directly.
            args += ["--depth", str(self.depth), "--no-local"]
        try:
            self.network_git([*args, "--", self.url, str(partial)], cwd=self.dest.parent)
        except GitFailed as failure:
            shutil.rmtree(partial, ignore_errors=True)
            raise self.network_error(failure, have_copy=False) from None
        self.move_into_place(partial)
        depth = f", last {self.depth} commit(s)" if self.depth else ""
        return Outcome("cloned", True, f"cloned {self.url} branch {self.branch}{depth}")

    def move_into_place(self, partial: Path) -> None:
        try:
            os.rename(partial, self.dest)  # replaces an empty folder too
            return
        except OSError:
            pass
        # dest is an empty mount point (a volume): move the contents, .git last, so the
        # folder only looks like a repository once everything is in it.
        entries = sorted(partial.iterdir(), key=lambda p: p.name == ".git")
        for entry in entries:
            os.rename(entry, self.dest / entry.name)
        partial.rmdir()

    def remove_partial_clones(self) -> None:
        # Only ever our own hidden folders, left by a run that was killed; we hold the lock.
        if not self.dest.parent.is_dir():
            return
        for stale in self.dest.parent.glob(f".{self.dest.name}{PARTIAL_CLONE_MARK}*"):
            shutil.rmtree(stale, ignore_errors=True)

    # -- update -------------------------------------------------------------------

    def update(self) -> Outcome:
        repo = git.Repo(self.dest)
        self.check_origin(repo)
        try:
            self.fetch(repo)
        except GitFailed as failure:
            raise self.network_error(failure, have_copy=True) from None

        if repo.head.is_detached:
            return Outcome(
                "detached",
                True,
                f"fetched origin/{self.branch}; HEAD is detached, so nothing was switched",
                f"Your checkout was left as it is. To come back: `git switch {self.branch}`.",
            )
        current = repo.active_branch.name
        if current != self.branch:
            return Outcome(
                "other_branch",
                True,
                f"fetched origin/{self.branch}; you are on branch {current}, which was left as it is",
                f"To pick up the team's latest work: `git switch {self.branch} && git pull --ff-only`.",
            )

        upstream = f"origin/{self.branch}"
        ahead, behind = (
            int(n) for n in repo.git.rev_list("--left-right", "--count", f"HEAD...{upstream}").split()
        )
        if ahead and behind:
            return Outcome(
                "diverged",
                True,
                f"{self.branch} has diverged: {ahead} local commit(s) not pushed, "
                f"{behind} new commit(s) on {upstream}; nothing was changed",
                f"Bring them together in a terminal: `git pull --rebase` (or `git merge {upstream}`), "
                "resolve any conflicts, then `git push`.",
            )
        if ahead:
            return Outcome(
                "ahead",
                True,
                f"ahead by {ahead}: {ahead} local commit(s) on {self.branch} not yet pushed",
                "Your commits are safe. Push them when ready: `git push`.",
            )
        if not behind:
            return Outcome("up_to_date", True, f"{self.branch} is up to date with {upstream}")
        return self.fast_forward(repo, upstream, behind)

    def fast_forward(self, repo: git.Repo, upstream: str, behind: int) -> Outcome:
        incoming = split_z(repo.git.diff("--name-only", "--no-renames", "-z", "HEAD", upstream))
        reasons = held_back(incoming)
        if reasons:
            files = sorted({path for _, paths in reasons for path in paths})
            what = " and ".join(f"{reason.what} ({listed(paths)})" for reason, paths in reasons)
            why = "; ".join(reason.why for reason, _ in reasons)
            # The names come from someone else's commit: quoted, so the command can be pasted.
            named = " ".join(shlex.quote(path) for path in files)
            return Outcome(
                reasons[0][0].state,
                True,
                f"behind {upstream} by {behind} commit(s) that change {what}; nothing was changed: "
                f"{why}, and someone else's commit must not do that in your server without you",
                f"Read them: `git diff HEAD {upstream} -- {named}`; if they are fine, take exactly "
                f"what you read: `git merge --ff-only {upstream}` (`git pull` would fetch again and "
                "could bring more). The next start then updates as usual.",
                files=files,
            )
        at_risk = self.files_at_risk(repo, upstream)
        if at_risk:
            return Outcome(
                "local_changes_in_the_way",
                True,
                f"behind {upstream} by {behind} commit(s) that change files you have edited "
                f"({listed(at_risk)}); nothing was changed",
                "Commit your edits (or `git stash`), then `git pull --rebase` "
                "(and `git stash pop` if you stashed).",
                files=at_risk,
            )
        edited = repo.is_dirty(untracked_files=True)
        try:
            # git is the last word: it refuses to overwrite anything local by itself.
            repo.git.merge("--ff-only", upstream)
        except git.GitCommandError as error:
            return Outcome(
                "update_refused",
                True,
                f"behind {upstream} by {behind} commit(s); git refused to fast-forward: "
                f"{one_line(error.stderr)}",
                "Nothing was changed. Finish what git names above, then `git pull --ff-only`.",
            )
        kept = "; your uncommitted edits were kept" if edited else ""
        return Outcome("updated", True, f"fast-forwarded {behind} commit(s) from {upstream}{kept}")

    def files_at_risk(self, repo: git.Repo, upstream: str) -> list[str]:
        """Files the incoming commits would write over: tracked files edited locally, and
        untracked or ignored files standing where the incoming commits add a file."""
        incoming = set(split_z(repo.git.diff("--name-only", "--no-renames", "-z", "HEAD", upstream)))
        added = split_z(
            repo.git.diff("--name-only", "--no-renames", "--diff-filter=A", "-z", "HEAD", upstream)
        )
        edited = set(split_z(repo.git.diff("--name-only", "--no-renames", "-z", "HEAD")))
        at_risk = incoming & edited
        for path in added:
            parts = Path(path).parts
            for depth in range(1, len(parts) + 1):
                local = self.dest.joinpath(*parts[:depth])
                is_last = depth == len(parts)
                if os.path.lexists(local) and (is_last or not local.is_dir()):
                    at_risk.add(path)
                    break
        return sorted(at_risk)

    def check_origin(self, repo: git.Repo) -> None:
        try:
            origin_url = repo.remote("origin").url
        except ValueError:
            origin_url = ""
        if not origin_url or remote_key(origin_url) != remote_key(self.url):
            raise SyncError(
                "other_remote",
                f"{self.dest} is a clone of {redact(origin_url) or 'no origin at all'}, "
                f"not of {redact(self.url)}; it was left as it is",
                f"If that is intended, nothing to do. Otherwise move the folder away "
                f"(`mv {self.dest} {self.dest}.old`) and restart your server.",
                ok=True,
            )

    def fetch(self, repo: git.Repo) -> None:
        # The configured refspecs, plus the tracked branch explicitly: a single-branch or
        # shallow clone would otherwise never learn of a newly configured branch.
        refspecs = repo.git.config("--get-all", "remote.origin.fetch", with_exceptions=False).split()
        refspecs.append(f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}")
        self.network_git(["fetch", "--quiet", "origin", *refspecs], cwd=self.dest)

    # -- credentials and identity -------------------------------------------------

    def ensure_credential_helper(self) -> None:
        """Point git at our helper for this remote's host, for this run and for the
        user's own `git push` later. Only the helper's path is stored, never the token."""
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https"):
            return
        key = f"credential.{parts.scheme}://{parts.netloc}.helper"
        value = f"{sys.executable} {CREDENTIAL_HELPER}"
        current = git_config_global("--get-all", key)
        if current.splitlines() != [value]:
            git_config_global("--replace-all", key, value)

    def trust_shared_remote(self) -> None:
        """A remote on this machine that another account owns (the platform's, shared with
        the users' group) is one git refuses as of "dubious ownership" unless the user's
        global config names it; only git 2.40+ would take it from the environment."""
        if "://" in self.url or ":" in self.url.split("/", 1)[0]:
            return  # a URL or scp-like host:path, not a folder here
        path = Path(self.url).expanduser()
        try:
            owner = path.stat().st_uid
        except OSError:
            return
        trusted = str(path.resolve())
        if (
            owner != os.geteuid()
            and trusted not in git_config_global("--get-all", "safe.directory").splitlines()
        ):
            git_config_global("--add", "safe.directory", trusted)

    # -- running git over the network ---------------------------------------------

    def network_git(self, args: list[str], cwd: Path) -> None:
        """Run a git command that talks to the remote, in its own process group, so that
        the timeout ends git and its helpers (git-remote-https, ssh) together."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise GitFailed("", timed_out=True)
        proc = subprocess.Popen(
            ["git", *args],
            cwd=cwd,
            env=network_env(self.timeout),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            _, stderr = proc.communicate(timeout=remaining)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise GitFailed("", timed_out=True) from None
        if proc.returncode:
            raise GitFailed(self.scrub(stderr))

    def network_error(self, failure: GitFailed, have_copy: bool) -> SyncError:
        where = redact(self.url)
        kept = " Your copy was left as it is; you can keep working and pull later." if have_copy else ""
        text = failure.stderr
        if failure.timed_out:
            state = "unreachable"
            summary = f"no answer from {where} within {self.timeout:g} s"
            advice = "Check the URL and the network, then restart your server or run `git pull`."
        elif re.search(
            r"Authentication failed|could not read (Username|Password)|"
            r"\b40[13]\b|terminal prompts disabled|Permission denied \(publickey",
            text,
        ):
            state = "auth_failed"
            have = "the token that is set was refused" if self.token else "no token is set"
            summary = f"{where} refused access ({have})"
            advice = (
                "Give git a token that can read this repository. On Kubernetes, log out and in "
                "again: your GitHub login's token reaches your server (MLOPS_IDE_GIT_TOKEN_FILE). "
                "On one machine the operator's token stays with Airflow: clone it in a terminal "
                "with your own credentials (git asks once), or ask your operator. Then restart "
                "your server."
            )
        elif re.search(r"Remote branch .* not found|couldn't find remote ref", text):
            state = "branch_missing"
            summary = f"branch {self.branch!r} does not exist on {where}"
            advice = (
                f"Ask for the branch to be pushed, or set MLOPS_IDE_REPO_BRANCH (--branch) to "
                f"a branch that exists: `git ls-remote --heads {where}` lists them."
            )
        elif re.search(r"Could not resolve host|Name or service not known", text):
            state = "unreachable"
            summary = f"cannot resolve the host of {where}"
            advice = "Check MLOPS_IDE_REPO_URL (--url) for a typo, and the network."
        else:
            state = "unreachable"
            summary = f"could not reach {where}: {one_line(text)}"
            advice = "Check MLOPS_IDE_REPO_URL (--url) and that the repository exists."
        return SyncError(state, summary + "." + kept, advice, ok=have_copy)

    def scrub(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text

    # -- lock ---------------------------------------------------------------------

    def lock(self) -> FileLock:
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(self.dest.parent / f".{self.dest.name}.sync-lock", self.deadline)


class FileLock:
    """An flock held for the run: a second run waits for it until its own deadline,
    then stands down. The kernel releases it when a run dies, so it never goes stale."""

    def __init__(self, path: Path, deadline: float):
        self.path = path
        self.deadline = deadline
        self.fd = -1

    def __enter__(self) -> FileLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except BlockingIOError:
                if time.monotonic() >= self.deadline:
                    os.close(self.fd)
                    raise SyncError(
                        "busy",
                        "another sync of this folder is still running; this one stood down",
                        "Wait a moment and look again; the other run writes its own status.",
                        ok=False,
                    ) from None
                time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


# -- helpers ----------------------------------------------------------------------


def network_env(timeout: float) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("GIT_ASKPASS", "SSH_ASKPASS"):
        env.pop(name, None)  # nothing may stop to ask a person: there is none at start-up
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["LC_ALL"] = "C"  # git's messages are matched in network_error
    env.setdefault("GIT_SSH_COMMAND", f"ssh -o BatchMode=yes -o ConnectTimeout={max(1, int(timeout))}")
    env.setdefault("GIT_HTTP_LOW_SPEED_LIMIT", "1000")
    env.setdefault("GIT_HTTP_LOW_SPEED_TIME", str(max(1, int(timeout))))
    return env


def git_config_global(*args: str) -> str:
    result = subprocess.run(["git", "config", "--global", *args], capture_output=True, text=True, check=False)
    return result.stdout.strip()


def ensure_identity(user: str) -> None:
    """Give git a name and email from the hub username when the user has none yet."""
    if not git_config_global("--get", "user.name"):
        git_config_global("user.name", user)
    if not git_config_global("--get", "user.email"):
        git_config_global("user.email", os.environ.get("MLOPS_IDE_GIT_EMAIL") or f"{user}@localhost")


def split_z(output: str) -> list[str]:
    return [path for path in output.split("\0") if path]


def listed(paths: list[str]) -> str:
    return ", ".join(paths[:5]) + (", …" if len(paths) > 5 else "")


def one_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    fatal = [line for line in lines if line.startswith(("fatal:", "error:"))]
    return (fatal or lines or ["(git said nothing)"])[0]


def redact(url: str) -> str:
    """A URL without any user information, fit for a log line."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if not (parts.username or parts.password):
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return parts._replace(netloc=host).geturl()


def write_status(path: Path, outcome: Outcome, url: str, branch: str, dest: Path) -> None:
    """A short note the user can open in VS Code: what happened and what to do next."""
    title = (
        "ready"
        if outcome.ok and not outcome.advice
        else ("needs your attention" if outcome.ok else "not available")
    )
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    lines = [
        f"# Pipeline repository: {title}",
        "",
        f"- folder: `{dest}`",
        f"- remote: `{redact(url)}` branch `{branch}`",
        f"- checked: {when} ({outcome.state})",
        "",
        outcome.summary[:1].upper() + outcome.summary[1:] + ("" if outcome.summary.endswith(".") else "."),
    ]
    if outcome.files:
        heading = "Files to read first:" if outcome.state.startswith("review_") else "Files in the way:"
        lines += ["", heading, *[f"- `{name}`" for name in outcome.files]]
    if outcome.advice:
        lines += ["", "What to do: " + outcome.advice]
    partial = path.with_name(f".{path.name}.tmp")
    partial.write_text("\n".join(lines) + "\n")
    os.replace(partial, path)


def sync(
    url: str,
    branch: str,
    dest: Path,
    depth: int | None = None,
    timeout: float = 120.0,
    user: str | None = None,
    status_file: Path | None = None,
) -> Outcome:
    """Run the hook once; never raises for git or network trouble, returns the outcome."""
    started = time.monotonic()
    try:
        outcome = RepoSync(url, branch, dest, depth, timeout).run()
    except SyncError as error:
        outcome = error.outcome
    if user:
        ensure_identity(user)
    seconds = time.monotonic() - started
    print(
        f"mlops-ide sync: {outcome.state} in {seconds:.2f}s: {outcome.summary} "
        f"[dest={dest} url={redact(url)} branch={branch}]",
        file=sys.stderr,
    )
    if status_file is not None:
        try:
            write_status(status_file, outcome, url, branch, dest)
        except OSError as error:
            print(f"mlops-ide sync: could not write {status_file}: {error}", file=sys.stderr)
    return outcome


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m startup.sync",
        description="Clone the pipeline repository, or fast-forward it when that loses nothing.",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("MLOPS_IDE_REPO_URL"),
        help="repository to clone (default: $MLOPS_IDE_REPO_URL)",
    )
    parser.add_argument(
        "--branch",
        default=os.environ.get("MLOPS_IDE_REPO_BRANCH") or "main",
        help="branch to clone and track (default: $MLOPS_IDE_REPO_BRANCH or main)",
    )
    parser.add_argument("--dest", type=Path, help="folder of the clone (default: $HOME/<repo name>)")
    parser.add_argument("--depth", type=int, help="shallow clone of the last N commits")
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the remote before giving up (default: 120)",
    )
    parser.add_argument(
        "--status-file",
        type=Path,
        help=f"where to write the user's status note (default: $HOME/{STATUS_FILE_NAME})",
    )
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("no repository given: set MLOPS_IDE_REPO_URL or pass --url")
    if args.depth is not None and args.depth < 1:
        parser.error("--depth must be a whole number of at least 1")
    if args.timeout <= 0:
        parser.error("--timeout must be a number of seconds above 0")
    home = Path(os.environ.get("HOME") or Path.home())
    if args.dest is None:
        try:
            args.dest = home / repo_name(args.url)
        except ValueError as error:
            parser.error(str(error))
    args.dest = args.dest.expanduser().absolute()
    args.status_file = args.status_file or home / STATUS_FILE_NAME
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    user = os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
    outcome = sync(args.url, args.branch, args.dest, args.depth, args.timeout, user, args.status_file)
    return 0 if outcome.ok else 1


if __name__ == "__main__":
    sys.exit(main())
