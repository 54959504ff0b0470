"""`mlops-ide dag check|test|upgrade|status`: what a data scientist runs in VS Code's
terminal (or its tasks) before pushing, on their working copy of the pipeline repository.

    mlops-ide dag check [PATH...]          the DAG files changed in the working copy (or PATHs)
    mlops-ide dag check --pre-push         git's pre-push hook: the DAG files the push changes
    mlops-ide dag test DAG_ID|FILE [--conf JSON]
    mlops-ide dag upgrade [PATH...] [--force]  Airflow 2 spellings to Airflow 3's (ruff's AIR rules)
    mlops-ide dag status [--wait SECONDS]      which commit Airflow runs, and its verdict (dag_status.py)

The DAG folder is MLOPS_IDE_DAGS_FOLDER's (the platform sets it: `dags` by default, a
sub-folder such as `cnn_skin_cancer`, or `.` for the whole repository); files are named by
their path in the repository. `check` loads each file as Airflow does (dag_check.py: network
blocked, no database) and prints one line per problem, `dags/<file>.py:<line>: <error>`,
with what Airflow 3 changed in
that file and its replacement under it (airflow3_upgrade.py); exit 1 on any. `upgrade` applies
those replacements, prints the diff, checks the files again and lists what is left to do by
hand; it refuses a file with uncommitted changes unless --force. `test` runs
the DAG once from the working copy with `airflow dags test`, against a metadata database
of its own made for this run and thrown away after (never the platform's), its task logs
streamed here; MLflow's address and token are the user's (runs land in the platform's
MLflow, as them); exit 0 only if every task succeeded. The DAG code either runs has none of
the server's other credentials in its environment (hub and git tokens): it may be a
teammate's.

Run by Airflow's Python as a script (user_tools writes the `mlops-ide` wrapper that does);
the DAGs' settings (MLOPS_IDE_PIPELINE_PYTHON, MLOPS_IDE_DATA_ROOT ...) come from its
environment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from mlops_ide import names
from mlops_ide.portable import airflow3_upgrade, dag_folder
from mlops_ide.workspace import dag_status, warm_dag_check

CHECKER = Path(__file__).resolve().parents[1] / "portable" / "dag_check.py"  # run by path: stdlib only
NO_COMMIT = "0" * 40
BUNDLE = "working-copy"
# What a task's log says when the DAG needs something set in Airflow (Airflow 3.3's SDK).
MISSING = (
    (re.compile(r"The conn_id `([^`]+)` isn't defined"), "connection"),
    (re.compile(r"Variable (\S+) not found"), "variable"),
    (re.compile(r"Variable (\S+) does not exist"), "variable"),
)


# What DAG code run here never sees: the hub's tokens for this server, git's, any secret.
# `dag test` keeps MLflow's token alone (its runs land in MLflow as the user).
CREDENTIAL = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|API_KEY|^JUPYTERHUB_", re.IGNORECASE)


def without_credentials(environ: dict[str, str], keep: tuple[str, ...] = ()) -> dict[str, str]:
    return {key: value for key, value in environ.items() if key in keep or not CREDENTIAL.search(key)}


class UsageError(Exception):
    """Bad input: the message says what to do."""


def git(args: list[str], cwd: Path, check: bool = True) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if check and result.returncode:
        raise UsageError(f"git {' '.join(args)}: {result.stderr.strip()}")
    return result.stdout if result.returncode == 0 else ""


class NoDagFolder(UsageError):
    """The working copy has no folder MLOPS_IDE_DAGS_FOLDER names."""


def folder() -> str:
    """The DAG folder the platform set (MLOPS_IDE_DAGS_FOLDER), as every part spells it."""
    try:
        return dag_folder.parse(os.environ.get(dag_folder.ENV))
    except dag_folder.BadFolder as problem:
        raise UsageError(f"{dag_folder.ENV}={os.environ[dag_folder.ENV]!r} {problem}") from None


def dags_of(repo: Path) -> Path:
    """The DAG folder of a working copy; NoDagFolder, naming the setting and the repository's
    top folders, when it has none."""
    dags = repo.joinpath(*Path(folder()).parts)
    if not dags.is_dir():
        tops = sorted(p.name + "/" for p in repo.iterdir() if p.is_dir() and not p.name.startswith("."))
        raise NoDagFolder(
            f"{repo.name} has no DAG folder {folder()}/ ({dag_folder.ENV}, set by the platform); its "
            f"top folders: {', '.join(tops) or 'none'}. Ask a hub admin to set {dag_folder.ENV} to the "
            "folder of your DAG files (`.` for the whole repository)."
        )
    return dags


def pathspec() -> list[str]:
    """git's pathspec of the DAG folder: nothing (everything) for the whole repository."""
    return [] if folder() == dag_folder.WHOLE_REPOSITORY else ["--", folder()]


def working_copy(start: Path) -> Path:
    """The git working copy holding `start` (or MLOPS_IDE_WORKSPACE's)."""
    for candidate in (start, Path(os.environ.get("MLOPS_IDE_WORKSPACE") or start)):
        top = (
            git(["rev-parse", "--show-toplevel"], candidate, check=False).strip()
            if candidate.is_dir()
            else ""
        )
        if top:
            return Path(top)
    raise UsageError(
        f"{start} is not in a working copy of the pipeline repository (a git folder): "
        "cd into your clone (in your home folder) and run it again."
    )


def dag_files(paths: list[str]) -> list[str]:
    """The Python files of the DAG folder among repository paths, as paths in the folder
    (the checker keeps those Airflow's discovery lists)."""
    found = []
    for path in paths:
        name = dag_folder.in_folder(path, folder())
        if name is not None and name.endswith(".py") and name not in found:
            found.append(name)
    return found


def changed_in_working_copy(repo: Path) -> list[str]:
    """DAG files edited, added or untracked, and those changed by commits not pushed yet."""
    status = git(["status", "--porcelain", "-z", "--untracked-files=all", *pathspec()], repo)
    paths = []
    entries = iter(status.split("\0"))
    for entry in entries:
        if not entry:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":
            next(entries, None)  # the rename's old name follows
        if "D" not in code:
            paths.append(path)
    upstream = git(["rev-parse", "--verify", "--quiet", "@{upstream}"], repo, check=False).strip()
    if upstream:
        paths += git(
            ["diff", "--name-only", "-z", "--diff-filter=d", f"{upstream}...HEAD", *pathspec()], repo
        ).split("\0")
    return dag_files(paths)


def named(repo: Path, paths: list[str]) -> list[str] | None:
    """DAG files (paths in the DAG folder) from PATHs given on the command line: its .py
    files, or the folder itself (None: every DAG file)."""
    dags = dags_of(repo).resolve()
    names: list[str] = []
    for given in paths:
        path = Path(given).resolve()
        if path == dags:
            return None
        if not path.is_relative_to(dags) or path.suffix != ".py":
            raise UsageError(f"{given} is not a DAG file: DAG files are the .py files in {dags}.")
        if not path.exists():
            raise UsageError(f"{given} does not exist.")
        names.append(path.relative_to(dags).as_posix())
    return names


def airflow_variables(environ: dict[str, str]) -> dict[str, str]:
    """The Airflow variables the platform defines for every pipeline repository (Airflow's
    own `AIRFLOW_VAR_<NAME>` convention), as Airflow has them: a DAG that reads one at parse
    time loads here as it will there."""
    known = {"MLFLOW_TRACKING_URI": environ.get("MLFLOW_TRACKING_URI")}
    return {f"AIRFLOW_VAR_{name}": value for name, value in known.items() if value}


def check_environment(environ: dict[str, str]) -> dict[str, str]:
    """The environment DAG code runs in for a check: the user's, without its credentials,
    with the Airflow variables the platform defines."""
    return {**without_credentials(environ), **airflow_variables(environ)}


def dag_check(dags: Path, *flags: str) -> subprocess.CompletedProcess:
    """dag_check.py on the folder `dags`, in this (Airflow's) Python, with none of the
    server's credentials in the environment of the DAG code it imports: from this user's warm
    check (warm_dag_check.py: Airflow imported once) unless it is off or cannot answer."""
    env = check_environment(dict(os.environ))
    if warm_dag_check.enabled(env):
        try:
            status, output = warm_dag_check.run(dags, list(flags), env, Path.home())
            return subprocess.CompletedProcess([str(CHECKER), str(dags), *flags], status, output)
        except (warm_dag_check.Unavailable, OSError) as problem:
            print(f"mlops-ide: checking without the warm check: {problem}", file=sys.stderr)
    return subprocess.run(
        [sys.executable, str(CHECKER), str(dags), *flags],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=dags,
    )


PROBLEM = re.compile(r"^(?P<file>[^:]+\.py)(?::(?P<line>\d+))?: ")
SUMMARY = re.compile(r"^\d+ DAG file\(s\), \d+ that would not load$")  # dag_check.py's last line


def run_checker(dags: Path, names: list[str] | None, upgrade_hints: bool = True) -> int:
    """dag_check.py --problems on `names` (paths in the DAG folder `dags`; None: all) ; its
    lines, naming files by their path in the repository, go to stdout, each failing file's
    with what Airflow 3 changed in it under its line."""
    if names == []:
        return 0
    only = ("--only", ",".join(names)) if names is not None else ()
    result = dag_check(dags, "--problems", "--prefix", dag_folder.prefix(folder()), *only)
    problems = result.stdout.splitlines()
    if not (problems and SUMMARY.match(problems[-1])):  # e.g. a DAG file that ended the process
        print(
            f"the DAG check ended without its summary (exit status {result.returncode}): a DAG file may "
            "have ended the process (os._exit, a signal); run `mlops-ide dag check` on each file"
        )
        return 1
    hints = failing_file_hints(dags, problems) if upgrade_hints else {}
    for line in problems:
        print(line)
        problem = PROBLEM.match(line)
        if problem and problem["file"] in hints:
            failing_line = int(problem["line"]) if problem["line"] else None
            command = f"mlops-ide dag upgrade {problem['file']}"
            print("\n".join(airflow3_upgrade.hint_lines(hints[problem["file"]], failing_line, command)))
    return 1 if result.returncode else 0


def failing_file_hints(dags: Path, problems: list[str]) -> dict[str, list]:
    """What ruff's Airflow rules find in each DAG file that fails, by the name the problem
    line gives it; none when ruff cannot run (the problems are said all the same)."""
    files = {match["file"] for match in map(PROBLEM.match, problems) if match}
    in_folder = {name: dag_folder.in_folder(name, folder()) for name in files}
    paths = {
        name: dags / inside for name, inside in in_folder.items() if inside and (dags / inside).is_file()
    }
    try:
        found = airflow3_upgrade.hints(list(paths.values()), dags)
    except airflow3_upgrade.UpgradeError as problem:
        print(f"mlops-ide: no Airflow 3 hints: {problem}", file=sys.stderr)
        return {}
    return {name: found[path.resolve()] for name, path in paths.items() if path.resolve() in found}


def upgrade(repo: Path, paths: list[str], force: bool) -> int:
    """Airflow 2 spellings in the named DAG files (default: every one) to Airflow 3's."""
    dags = dags_of(repo).resolve()
    chosen = []
    for given in paths or [str(dags)]:
        path = Path(given).resolve()
        if path == dags:
            chosen += dag_files_of(dags)
            continue
        if not path.is_relative_to(dags):
            raise UsageError(f"{given} is outside the DAG folder ({dags}): name DAG files in it.")
        if not path.is_file():
            raise UsageError(f"{given} is not a file of the DAG folder ({dags}).")
        if path.suffix != ".py":
            raise UsageError(f"{given} is not a Python file: only DAG files (.py) are upgraded.")
        chosen.append(path)
    try:
        diff, left = airflow3_upgrade.upgrade(chosen, repo, force)
    except airflow3_upgrade.UpgradeError as problem:
        raise UsageError(str(problem)) from None
    diff = "".join(line for line in diff.splitlines(keepends=True) if not line.startswith("Would fix"))
    print(diff.rstrip("\n") if diff.strip() else "mlops-ide: nothing to change for Airflow 3.", flush=True)
    changed = [path.relative_to(dags).as_posix() for path in chosen]
    print(f"mlops-ide: checking {len(changed)} DAG file(s) again", flush=True)
    status = run_checker(dags, changed, upgrade_hints=False)
    if left:
        print("mlops-ide: left to do by hand (Airflow 3 still runs these, for now):")
        for finding in left:
            print(f"  {finding.path.resolve().relative_to(repo)}:{finding.hint()}")
    if status:
        print(
            "mlops-ide: still failing after the upgrade: fix the lines above by hand (a provider's "
            "own modules moved too, e.g. cncf.kubernetes' operators.kubernetes_pod is operators.pod)."
        )
    return status


def dag_files_of(dags: Path) -> list[Path]:
    """Every file the checker may take in the DAG folder: its .py files, sub-folders too
    (Airflow's discovery, in the checker, keeps those that can hold a DAG)."""
    return sorted(path for path in dags.rglob("*.py") if ".git" not in path.relative_to(dags).parts)


def check(repo: Path, paths: list[str]) -> int:
    dags = dags_of(repo)
    names = named(repo, paths) if paths else changed_in_working_copy(repo)
    if names == []:
        every = dags.relative_to(repo).as_posix()
        print(f"No DAG file changed in {repo.name}; `mlops-ide dag check {every}` checks them all.")
        return 0
    return run_checker(dags, names)


def has_commit(repo: Path, sha: str) -> bool:
    probe = subprocess.run(["git", "cat-file", "-e", f"{sha}^{{commit}}"], cwd=repo, capture_output=True)
    return probe.returncode == 0


def checked_by_the_remote(url: str | None) -> bool:
    """Whether the push goes to the platform's own remote (the hub's git service, the URL the
    platform gave this server), whose pre-receive hook checks the same files in its sandbox,
    from a warm process: a second check here would only double the push's time."""
    ours = os.environ.get("MLOPS_IDE_REPO_URL", "")
    return bool(url) and url == ours and urlsplit(ours).path.startswith(names.GIT_PREFIX)


def moves_what_airflow_tracks(url: str | None, updates: str) -> bool:
    """Whether the push updates the branch Airflow tracks on the repository it reads (a
    remote outside the platform, which the platform polls)."""
    branch = f"refs/heads/{os.environ.get('MLOPS_IDE_REPO_BRANCH', 'main')}"
    moved = [
        fields for fields in map(str.split, updates.splitlines()) if len(fields) == 4 and fields[2] == branch
    ]
    return bool(url) and url == os.environ.get("MLOPS_IDE_REPO_URL") and any(f[1] != NO_COMMIT for f in moved)


def pre_push(repo: Path, updates: str, url: str | None = None) -> int:
    """git's pre-push hook gets `<local ref> <local sha> <remote ref> <remote sha>` lines:
    check the DAG files each pushed commit changes, as committed (not the working copy).
    It never stops a push it cannot judge (no DAG folder, no checker): it says why, once.
    To the platform's own remote it leaves the check to the remote, and says so."""
    if checked_by_the_remote(url):
        print("mlops-ide: the platform's remote checks this push's DAG files", file=sys.stderr)
        return 0
    try:
        status = check_pushed(repo, updates)
        if status == 0 and moves_what_airflow_tracks(url, updates):
            print(
                "mlops-ide: Airflow picks this push up within seconds: `mlops-ide dag status --wait 30` "
                "says what is live",
                file=sys.stderr,
            )
        return status
    except NoDagFolder as problem:
        print(f"mlops-ide: no DAG check before this push: {problem}", file=sys.stderr)
    except (UsageError, OSError, subprocess.SubprocessError) as problem:
        print(f"mlops-ide: no DAG check before this push ({problem}); pushing all the same", file=sys.stderr)
    return 0


def check_pushed(repo: Path, updates: str) -> int:
    """pre_push's checks; 1 when a pushed DAG file would not load."""
    dags_of(repo)
    status = 0
    for line in updates.splitlines():
        fields = line.split()
        if len(fields) != 4 or fields[1] == NO_COMMIT:
            continue  # a deletion: nothing to check
        local, remote = fields[1], fields[3]
        if remote != NO_COMMIT and has_commit(repo, remote):
            diff = ["diff", "--name-only", "-z", "--diff-filter=d", remote, local, *pathspec()]
        else:  # a new branch, or a remote commit this clone has not fetched: all of them
            diff = ["ls-tree", "--name-only", "-z", "-r", local, *pathspec()]
        names = dag_files(git(diff, repo).split("\0"))
        if not names:
            continue
        with tempfile.TemporaryDirectory(prefix="mlops-ide-pre-push-") as where:
            archive = subprocess.run(
                ["git", "archive", local, *pathspec()[1:]], cwd=repo, capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", where], input=archive.stdout, check=True)
            print(
                f"mlops-ide: checking {len(names)} DAG file(s) of {fields[0]} before the push",
                file=sys.stderr,
            )
            status |= run_checker(Path(where).joinpath(*Path(folder()).parts), names)
    if status:
        print(
            "mlops-ide: the push is stopped: fix the lines above (or skip this check once with "
            "`git push --no-verify`; the platform checks again when the push arrives).",
            file=sys.stderr,
        )
    return status


def find_dags(dags: Path) -> list[dict]:
    """dag_check.py's report of every file: its DAG ids and whether it loads."""
    result = dag_check(dags)
    try:
        return json.loads(result.stdout)["files"]
    except (ValueError, KeyError):
        raise UsageError(f"could not list the DAGs of {dags}: run `mlops-ide dag check {dags}`.") from None


def choose_dag(repo: Path, wanted: str) -> str:
    """The DAG id to test: `wanted` itself, or the one DAG of the file `wanted` names."""
    dags = dags_of(repo)
    files = find_dags(dags)
    broken = [dag_folder.in_repository(f["file"], folder()) for f in files if f["error"]]
    if wanted.endswith(".py"):
        path = Path(wanted).resolve()
        name = path.relative_to(dags.resolve()).as_posix() if path.is_relative_to(dags.resolve()) else None
        match = next((f for f in files if f["file"] == name), None)
        if match is None:
            raise UsageError(f"{wanted} is not a DAG file of {dags}.")
        shown = dag_folder.in_repository(name, folder())
        if match["error"]:
            raise UsageError(f"{shown} does not load: {match['error']} (`mlops-ide dag check` says where).")
        if len(match["dags"]) != 1:
            ids = ", ".join(match["dags"]) or "none"
            raise UsageError(f"{shown} defines {len(match['dags'])} DAGs ({ids}): name the one to test.")
        return match["dags"][0]
    found = sorted(dag for f in files for dag in f["dags"])
    if wanted not in found:
        hint = f"; these files do not load: {', '.join(broken)}" if broken else ""
        raise UsageError(f"no DAG {wanted!r} in {dags}. The DAGs there: {', '.join(found) or 'none'}{hint}.")
    return wanted


def test_environment(repo: Path, home: Path) -> dict[str, str]:
    """Airflow in `home` (a folder of this run's), on a database of its own, with the
    working copy's DAG folder as its only bundle; the DAGs' settings as this environment has them."""
    bundle = {
        "name": BUNDLE,
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(dags_of(repo))},
    }
    env = without_credentials(dict(os.environ), keep=("MLFLOW_TRACKING_TOKEN",))
    env = {key: value for key, value in env.items() if not key.startswith(("AIRFLOW", "PYTHONPATH"))}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([bundle]),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(home / "bundles"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "MLOPS_IDE_PIPELINE_RUNNER": "local",  # the steps run here, in the pipeline's Python
            "MLOPS_IDE_WORK_ROOT": str(home / "work"),  # arrays between steps: this run's own
            **airflow_variables(os.environ),
        }
    )
    return env


def missing_settings(lines: list[str]) -> list[str]:
    found = []
    for line in lines:
        for pattern, kind in MISSING:
            match = pattern.search(line)
            if match and f"{kind} {match[1]!r}" not in found:
                found.append(f"{kind} {match[1]!r}")
    return found


def test(repo: Path, wanted: str, conf: str | None) -> int:
    if conf is not None:
        try:
            json.loads(conf)
        except ValueError as error:
            raise UsageError(f"--conf is not JSON ({error}): e.g. --conf '{{\"epochs\": 1}}'.") from None
    dag_id = choose_dag(repo, wanted)
    airflow = Path(sys.executable).with_name("airflow")
    home = Path(tempfile.mkdtemp(prefix="mlops-ide-dag-test-"))
    try:
        env = test_environment(repo, home)
        print(f"mlops-ide: a throwaway Airflow database for this test ({home})", file=sys.stderr, flush=True)
        migrate = subprocess.run(
            [str(airflow), "db", "migrate"], env=env, cwd=home, capture_output=True, text=True
        )
        if migrate.returncode:
            print(migrate.stdout[-3000:] + migrate.stderr[-3000:], file=sys.stderr)
            raise UsageError("Airflow could not make its test database (the lines above say why).")
        argv = [str(airflow), "dags", "test", dag_id, *(["--conf", conf] if conf else [])]
        print(f"mlops-ide: running {dag_id} from {dags_of(repo)}", file=sys.stderr, flush=True)
        process = subprocess.Popen(
            argv, env=env, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        assert process.stdout is not None
        lines = []
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
        status = process.wait()
    finally:
        shutil.rmtree(home, ignore_errors=True)
    if status:
        missing = missing_settings(lines)
        needs = f": it needs {', '.join(missing)}, which Airflow here does not have" if missing else ""
        print(f"mlops-ide: {dag_id} failed{needs} (its task logs are above).", file=sys.stderr)
        return 1
    print(f"mlops-ide: {dag_id} passed: every task succeeded.", file=sys.stderr)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="mlops-ide", description="Check and test DAGs before you push.")
    commands = top.add_subparsers(dest="group", required=True)
    dag = commands.add_parser("dag", help="check or test the DAGs of your working copy")
    actions = dag.add_subparsers(dest="action", required=True)
    check_cmd = actions.add_parser("check", help="load DAG files as Airflow does; a line per problem")
    check_cmd.add_argument(
        "paths", nargs="*", help="DAG files or the DAG folder (default: those you changed)"
    )
    check_cmd.add_argument("--pre-push", action="store_true", help="as git's pre-push hook (reads stdin)")
    test_cmd = actions.add_parser("test", help="run one DAG once from your working copy")
    test_cmd.add_argument("dag", help="a DAG id, or a DAG file holding one DAG")
    test_cmd.add_argument("--conf", help="the run's conf (params), as JSON")
    upgrade_cmd = actions.add_parser("upgrade", help="Airflow 2 spellings to Airflow 3's (ruff's AIR rules)")
    upgrade_cmd.add_argument("paths", nargs="*", help="DAG files (default: every DAG file)")
    upgrade_cmd.add_argument("--force", action="store_true", help="also files with uncommitted changes")
    status_cmd = actions.add_parser("status", help="which commit Airflow runs, and what it made of your push")
    status_cmd.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="until your push's verdict"
    )
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.action == "status":  # dag_status.py: exit 0 live, 1 broken, 2 no status, 3 not yet
        return dag_status.status(args.wait)
    try:
        repo = working_copy(Path.cwd())
        if args.action == "check":
            if args.pre_push:  # git gives the hook the remote's name and URL
                return pre_push(repo, sys.stdin.read(), args.paths[1] if len(args.paths) == 2 else None)
            return check(repo, args.paths)
        if args.action == "upgrade":
            return upgrade(repo, args.paths, args.force)
        return test(repo, args.dag, args.conf)
    except UsageError as error:
        print(f"mlops-ide: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
