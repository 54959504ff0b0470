"""The commands first on a data scientist's PATH (terminal, VS Code, JupyterLab):

    python, python3   the pipeline's Python (Keras, MLflow's client, numpy), with the
                      working copy's src/ importable (MLOPS_IDE_WORKSPACE, set by the
                      start wrapper: the user's clone)
    pytest, mlflow    the same environment's
    mlops-ide         `mlops-ide dag check|test` (dag_commands.py, in Airflow's Python)

Small shell scripts with absolute paths, written by `make up` into the state folder
(local mode) or at image build time (images/singleuser):

    python -m mlops_ide.workspace.user_tools DIR --pipeline-python P --airflow-python A --code LIB \
        [--env NAME=VALUE ...] [--kernel KERNELSPEC_DIR]

The working copy's src/ goes on PYTHONPATH here, in the commands a user runs, never in the
single-user server's own environment: a teammate's commit must not put code into the
server's process at its start.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

HEADER = "#!/bin/sh\n# Written by mlops-ide (mlops_ide.workspace.user_tools); replaced at each start.\n"
PIPELINE_ENV = (
    "# Keras on PyTorch, as the pipeline runs it (without it Keras looks for TensorFlow)\n"
    'KERAS_BACKEND="${KERAS_BACKEND:-torch}"; export KERAS_BACKEND\n'
    'if [ -n "$MLOPS_IDE_WORKSPACE" ]; then\n'
    '  PYTHONPATH="$MLOPS_IDE_WORKSPACE/src${PYTHONPATH:+:$PYTHONPATH}"; export PYTHONPATH\n'
    "fi\n"
)


def scripts(pipeline_python: Path, airflow_python: Path, code: Path, env: dict[str, str]) -> dict[str, str]:
    """File name -> the script's text."""
    python = shlex.quote(str(pipeline_python))
    # `mlops-ide` imports its code from `code` alone: -P keeps the working copy (the cwd) off
    # sys.path, and PYTHONPATH is left as the user has it for the DAG code it runs.
    launcher = (
        f"import sys; sys.path.insert(0, {str(code)!r}); "
        "from mlops_ide.workspace.dag_commands import main; sys.exit(main())"
    )
    commands = f"-P -c {shlex.quote(launcher)}"
    defaults = "".join(
        f"{name}=${{{name}:-{shlex.quote(value)}}}; export {name}\n" for name, value in env.items()
    )
    pipeline = HEADER + PIPELINE_ENV
    return {
        "python": f'{pipeline}exec {python} "$@"\n',
        "python3": f'{pipeline}exec {python} "$@"\n',
        "pytest": f'{pipeline}exec {python} -m pytest "$@"\n',
        "mlflow": f'{pipeline}exec {shlex.quote(str(pipeline_python.with_name("mlflow")))} "$@"\n',
        "mlops-ide": (
            f"{HEADER}# The DAGs' settings, for `mlops-ide dag test` (unless already set):\n{defaults}"
            f"MLOPS_IDE_PIPELINE_PYTHON={python}; export MLOPS_IDE_PIPELINE_PYTHON\n"
            f'exec {shlex.quote(str(airflow_python))} {commands} "$@"\n'
        ),
    }


def kernel_spec(python: Path) -> str:
    """A Jupyter kernel on `python` (a kernelspec folder named python3 replaces the server's own)."""
    spec = {
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (pipeline)",
        "language": "python",
        "metadata": {"debugger": True},
    }
    return json.dumps(spec, indent=2) + "\n"


def write(folder: Path, pipeline_python: Path, airflow_python: Path, code: Path, env: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in scripts(pipeline_python, airflow_python, code, env).items():
        path = folder / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        path.chmod(0o755)
    return folder


def main(argv: list[str] | None = None) -> None:
    top = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    top.add_argument("folder", type=Path)
    top.add_argument("--pipeline-python", type=Path, required=True)
    top.add_argument("--airflow-python", type=Path, required=True)
    top.add_argument("--code", type=Path, required=True, help="the folder holding mlops_ide/")
    top.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    top.add_argument("--kernel", type=Path, help="also write a kernelspec on `python` into this folder")
    args = top.parse_args(argv)
    env = dict(item.split("=", 1) for item in args.env)
    write(args.folder, args.pipeline_python, args.airflow_python, args.code, env)
    if args.kernel:
        args.kernel.mkdir(parents=True, exist_ok=True)
        (args.kernel / "kernel.json").write_text(kernel_spec(args.folder / "python"))


if __name__ == "__main__":
    main()
