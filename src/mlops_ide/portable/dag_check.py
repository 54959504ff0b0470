"""DAG integrity, the way Airflow itself parses: every file in a DAG folder imports
without error while the network and the metadata database are out of reach, and its
top-level body is cheap (DAG files must do no I/O and no heavy work at import).

    <airflow venv>/bin/python src/mlops_ide/portable/dag_check.py DAGS_DIR [--problems]
        [--only A.py,sub/B.py] [--prefix dags/]

The DAG files are those Airflow's own discovery lists in the folder (every `.py` file below
it, `.airflowignore` honoured, and, Airflow's safe mode, only files that mention both
"airflow" and "dag"), named by their path in the folder (`x.py`, `sub/x.py`).
With --problems (CI runs it so): one line per file that would not load,
`<prefix><file>.py:<line>: <error>` (the prefix: the folder's name and a slash, or what
--prefix says, e.g. its path in the repository; and, under it, how to set an Airflow
variable or connection the file reads at parse time and Airflow lacks), and exit 1 if there
is any. Otherwise prints one JSON object: {"files": [{"file", "dags", "error", "line",
"body_seconds"}]} ("line": where in the file the error is, when the traceback says).
Run it in Airflow's virtualenv; the tests and CI do.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path


class NetworkBlocked(RuntimeError):
    """Not an OSError on purpose: HTTP clients (urllib3 under requests and MLflow's client)
    retry connection errors with a growing back-off, so a DAG calling a service at parse time
    would hit Airflow's import timeout instead of failing at its own line at once."""


def block_network() -> None:
    """Any connection a DAG file makes at import fails loudly instead of waiting."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkBlocked("DAG files must not open network connections at import")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse  # type: ignore[method-assign]
    socket.create_connection = refuse  # type: ignore[assignment]


def block_database() -> None:
    """Point Airflow at a database that cannot be opened, before Airflow is imported."""
    nowhere = (
        Path(tempfile.mkdtemp(prefix="dag-check-db-")) / "no-such-dir" / "airflow.db"
    )  # ours: nobody made it
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{nowhere}"
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="dag-check-"))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    # the whole traceback (Airflow keeps 2 frames): the DAG file's own line is in it
    os.environ["AIRFLOW__CORE__DAGBAG_IMPORT_ERROR_TRACEBACK_DEPTH"] = "100"


def dag_files(dags_dir: Path) -> list[Path]:
    """The folder's DAG files as Airflow's DAG processor finds them (its own function)."""
    from airflow.utils.file import list_py_file_paths

    return sorted(Path(path) for path in list_py_file_paths(dags_dir, safe_mode=True))


def check(dags_dir: Path, only: set[str] | None = None) -> list[dict]:
    """Each DAG file of the folder (or those named in `only`, paths in the folder) loaded
    as Airflow would."""
    import airflow.sdk  # noqa: F401 - paid once here, so each file's figure is its own body
    from airflow.dag_processing.dagbag import DagBag

    # As Airflow's BundleDagBag does: DAG files import their helpers from the bundle's folder.
    sys.path.append(str(dags_dir))
    results = []
    for path in dag_files(dags_dir):
        name = path.relative_to(dags_dir).as_posix()
        if only is not None and name not in only:
            continue
        started = time.perf_counter()
        bag = DagBag(dag_folder=path, safe_mode=False, bundle_path=dags_dir, load_op_links=False)
        seconds = time.perf_counter() - started
        errors = list(bag.import_errors.values())
        results.append(
            {
                "file": name,
                "dags": sorted(bag.dag_ids),
                "error": errors[0].strip().splitlines()[-1] if errors else None,
                "line": error_line(errors[0], path) if errors else None,
                "body_seconds": round(seconds, 4),
            }
        )
    return results


def error_line(traceback_text: str, path: Path) -> int | None:
    """The line of `path` a traceback points at last (the import, the failing call, or
    the syntax error's line)."""
    found = None
    for match in re.finditer(r'File "([^"]+)", line (\d+)', traceback_text):
        if Path(match[1]).name == path.name:
            found = int(match[2])
    return found


# What a DAG reads from Airflow at parse time and Airflow does not have: the error says which.
MISSING_VARIABLE = re.compile(r"Variable (\S+?) (?:not found|does not exist)")
MISSING_CONNECTION = re.compile(r"The conn_id `([^`]+)` isn't defined")


def what_to_set(error: str | None) -> str | None:
    """For an error that names a missing Airflow variable or connection, how to set it."""
    variable = MISSING_VARIABLE.search(error or "")
    if variable:
        name = variable[1].strip("'\"")
        return (
            f"the Airflow variable {name} is not set: a hub admin sets it in Airflow (Admin > Variables, "
            f"/services/airflow/variables) or with `airflow variables set {name} VALUE`; or, better, "
            "read it in a task, not at parse time"
        )
    connection = MISSING_CONNECTION.search(error or "")
    if connection:
        return (
            f"the Airflow connection {connection[1]} is not set: a hub admin adds it in Airflow (Admin > "
            f"Connections, /services/airflow/connections) or with `airflow connections add {connection[1]} "
            "--conn-uri URI`"
        )
    return None


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    dags_dir = Path(args[0]).resolve()
    # Airflow logs to stdout; the result gets stdout to itself, the logs go to stderr.
    result = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    block_database()
    block_network()
    only = args[args.index("--only") + 1].split(",") if "--only" in args else None
    prefix = args[args.index("--prefix") + 1] if "--prefix" in args else f"{dags_dir.name}/"
    files = check(dags_dir, set(only) if only is not None else None)
    if "--problems" not in args:
        result.write(json.dumps({"files": files}) + "\n")
        result.flush()
        return 0
    problems = [f for f in files if f["error"]]
    for f in problems:
        where = f"{prefix}{f['file']}" + (f":{f['line']}" if f["line"] else "")
        result.write(f"{where}: {f['error']}\n")
        if what_to_set(f["error"]):
            result.write(f"  {what_to_set(f['error'])}\n")
    result.write(f"{len(files)} DAG file(s), {len(problems)} that would not load\n")
    result.flush()
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
