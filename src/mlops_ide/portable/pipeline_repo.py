"""The pipeline repository: what a team's data scientists clone, edit and push, and what
Airflow runs. Built from this checkout's committed HEAD, so it stays in step with the
platform: the parts that are the team's (DAGs, the pipeline package, its tests, its
requirements, its Dockerfile) and the files written for them in `pipeline-repo/` (README,
CI workflow, VS Code settings, pytest config). None of the platform's own files.

    python -m mlops_ide.portable.pipeline_repo DEST    a working copy of it in DEST (a new folder)

The local remote is seeded with `commit(checkout)` on the first `make up`; on Kubernetes
a team makes its GitHub repository from the folder this writes (docs/kubernetes.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

# path in the checkout -> path in the pipeline repository ("" = its root)
CONTENTS = {
    "pipeline-repo": "",
    "dags": "dags",
    "src/skin_cancer": "src/skin_cancer",
    "tests/pipeline": "tests",
    "requirements/pipeline.txt": "requirements/pipeline.txt",
    "requirements/pipeline-test.txt": "requirements/pipeline-test.txt",
    "requirements/airflow.txt": "requirements/airflow.txt",  # the DAG check in its CI
    "images/pipeline/Dockerfile": "Dockerfile",
    "src/mlops_ide/portable/dag_check.py": "ci/dag_check.py",
}
AUTHOR = {
    "GIT_AUTHOR_NAME": "mlops-ide",
    "GIT_AUTHOR_EMAIL": "mlops-ide@localhost",
    "GIT_COMMITTER_NAME": "mlops-ide",
    "GIT_COMMITTER_EMAIL": "mlops-ide@localhost",
}


class PipelineRepoError(Exception):
    pass


def git(args: list[str], cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True)
    if result.returncode:
        raise PipelineRepoError(f"git {args[0]} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout


def entries(checkout: Path, revision: str = "HEAD") -> list[str]:
    """`git update-index --index-info` lines: each committed file of CONTENTS at its path
    in the pipeline repository (modes kept: an executable stays one)."""
    lines = []
    for source, target in CONTENTS.items():
        listing = git(["ls-tree", "-r", "-z", "--full-tree", revision, "--", source], checkout)
        found = [item for item in listing.split("\0") if item]
        if not found:
            raise PipelineRepoError(f"{source} is not in {revision} of {checkout}: commit it first.")
        for item in found:
            info, path = item.split("\t", 1)
            inner = path[len(source) :].lstrip("/")
            mapped = "/".join(part for part in (target, inner) if part) or target
            lines.append(f"{info}\t{mapped}")
    return lines


def commit(checkout: Path, revision: str = "HEAD") -> str:
    """A root commit holding the pipeline repository as of `revision`, written into the
    checkout's object store (push it from there); its id."""
    try:
        source = git(["rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}"], checkout).strip()
    except PipelineRepoError:
        raise PipelineRepoError(f"{checkout} has no commit {revision}: commit first.") from None
    with tempfile.TemporaryDirectory(prefix="pipeline-repo-") as folder:
        env = {**os.environ, **AUTHOR, "GIT_INDEX_FILE": str(Path(folder) / "index")}
        git(
            ["update-index", "--add", "--index-info"],
            checkout,
            env,
            "\n".join(entries(checkout, source)) + "\n",
        )
        tree = git(["write-tree"], checkout, env).strip()
        message = (
            "The pipeline repository, as mlops-ide seeds it\n\n"
            f"Built by mlops_ide.portable.pipeline_repo from mlops-ide {source[:12]}.\n"
        )
        return git(["commit-tree", tree, "-m", message], checkout, env).strip()


def write_working_copy(checkout: Path, dest: Path, branch: str = "main") -> str:
    """A new git working copy of the pipeline repository in `dest` (which must not exist
    or be empty); the commit id. For a team creating its own repository."""
    if dest.exists() and any(dest.iterdir()):
        raise PipelineRepoError(f"{dest} is not empty: name a new folder.")
    seed = commit(checkout)
    git(["init", "--quiet", "--initial-branch", branch, str(dest)], checkout)
    git(["push", "--quiet", str(dest), f"{seed}:refs/mlops-ide/seed"], checkout)  # not the checked-out branch
    git(["reset", "--quiet", "--hard", seed], dest)
    git(["update-ref", "-d", "refs/mlops-ide/seed"], dest)
    return seed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python -m mlops_ide.portable.pipeline_repo DEST   (a new folder)", file=sys.stderr)
        return 2
    checkout = Path(__file__).resolve().parents[3]
    try:
        seed = write_working_copy(checkout, Path(args[0]).resolve())
    except PipelineRepoError as error:
        print(f"mlops-ide: {error}", file=sys.stderr)
        return 1
    print(f"{args[0]}: the pipeline repository at {seed[:12]}; add your remote and push it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
