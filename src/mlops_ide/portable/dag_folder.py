"""Where a pipeline repository keeps its DAG files: MLOPS_IDE_DAGS_FOLDER, a folder of the
repository (`dags` by default, `cnn_skin_cancer` for a team that keeps them beside its code,
`.` for the whole repository, `.airflowignore` at its top honoured as Airflow does).

One spelling everywhere: a relative POSIX path without `.`/`..` segments or a trailing
slash, or `.`. Airflow's bundle (`subdir`), the remote's push check, `mlops-ide dag`, the
pre-push hook and the push webhook all read it through `parse` and name files with
`in_repository` / `in_folder`, so a file is the same file for each of them.
Standard library only: the git hooks and Airflow's processes import it.
"""

from __future__ import annotations

import fnmatch
import re

DEFAULT = "dags"
WHOLE_REPOSITORY = "."
ENV = "MLOPS_IDE_DAGS_FOLDER"  # what user servers and hooks are given

SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+@-]*")


class BadFolder(ValueError):
    pass


def parse(raw: str | None) -> str:
    """The folder as every part of the platform spells it; BadFolder says what to set."""
    value = (raw if raw is not None else DEFAULT).strip()
    if value in ("", ".", "./"):
        return WHOLE_REPOSITORY
    value = value.removeprefix("./").rstrip("/")
    if value.startswith("/"):
        raise BadFolder("is an absolute path: name a folder of the repository, e.g. dags or cnn_skin_cancer.")
    parts = value.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise BadFolder("has an empty, `.` or `..` segment: name a folder inside the repository (dags).")
        if part == ".git" or not SEGMENT.fullmatch(part):
            raise BadFolder(
                "is not a plain folder name: use letters, digits, `_`, `-`, `.` and `/` between "
                "folders (e.g. pipelines/dags), or `.` for the whole repository."
            )
    return "/".join(parts)


def prefix(folder: str) -> str:
    """What repository paths of the folder's files start with: `dags/`, or nothing for `.`."""
    return "" if folder == WHOLE_REPOSITORY else folder + "/"


def in_repository(path_in_folder: str, folder: str) -> str:
    """A DAG folder path (`x.py`, `sub/x.py`) as a repository path (`dags/x.py`)."""
    return prefix(folder) + path_in_folder


def in_folder(repository_path: str, folder: str) -> str | None:
    """A repository path as a path in the DAG folder; None when it is outside the folder."""
    start = prefix(folder)
    if not repository_path.startswith(start) or repository_path == start:
        return None
    return repository_path[len(start) :]


def pathspec(folder: str) -> str:
    """The folder as git's commands take it (`--` then this)."""
    return folder


def airflow_parses(path_in_folder: str, airflowignore: str, content: bytes | None) -> bool:
    """Whether Airflow's DAG processor opens this file of the DAG folder at all (else no
    verdict ever comes for it): not matched by the folder's .airflowignore (glob patterns,
    Airflow 3's default syntax) and, its discovery safe mode, mentioning "airflow" and "dag"
    (or "asset"). A deleted file (no content) is named, as it was parsed before."""
    patterns = [line.strip() for line in airflowignore.splitlines()]
    if any(p and not p.startswith("#") and fnmatch.fnmatch(path_in_folder, p) for p in patterns):
        return False
    if content is None:
        return True
    text = content.lower()
    return b"airflow" in text and (b"dag" in text or b"asset" in text)
