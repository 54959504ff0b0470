"""What scripts/install.sh installed (.tools.env), and the commands a user's server finds
first on its PATH: the code-server shim, `python` & co., `mlops-ide`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlops_ide.machine.state import compile_cache
from mlops_ide.machine.state.layout import (
    StateError,
    code_lib,
    code_server_bin,
    ensure_folder,
    kernels_folder,
)
from mlops_ide.settings import CHECKOUT, Settings

TOOLS_FILE = CHECKOUT / ".tools.env"


TOOLS_FILE_KEYS = {  # Tools attribute -> the line scripts/install.sh writes for it
    "python": "MLOPS_IDE_PYTHON",
    "chp": "MLOPS_IDE_CHP",
    "node24": "MLOPS_IDE_NODE24",
    "code_server": "MLOPS_IDE_CODE_SERVER",
    "airflow_python": "MLOPS_IDE_AIRFLOW_PYTHON",
    "pipeline_python": "MLOPS_IDE_PIPELINE_PYTHON",
    "app_python": "MLOPS_IDE_APP_PYTHON",
}


@dataclass(frozen=True)
class Tools:
    """Where scripts/install.sh put what the platform runs (recorded in .tools.env)."""

    python: Path
    chp: Path
    node24: Path
    code_server: Path  # code-server's entry.js, run by Node 24
    airflow_python: Path  # the Airflow + MLflow virtualenv
    pipeline_python: Path  # the skin-lesion pipeline's virtualenv (Keras, PyTorch)
    app_python: Path  # the Streamlit app's virtualenv

    @classmethod
    def load(cls, path: Path = TOOLS_FILE) -> Tools:
        if not path.exists():
            raise StateError(f"{path} is missing: run `make up` (or scripts/install.sh platform) first.")
        values = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        tools = cls(**{attr: Path(values.get(key, "")) for attr, key in TOOLS_FILE_KEYS.items()})
        missing = [str(p) for p in vars(tools).values() if not p.is_file()]
        if missing:
            raise StateError(f"installed tools are missing ({', '.join(missing)}): run `make up` again.")
        return tools


def write_code_server_shim(settings: Settings, tools: Tools) -> Path:
    """A `code-server` on the user servers' PATH that runs the npm build on Node 24
    (jupyter-vscode-proxy looks it up by name), with the platform's compile cache unless
    the user set one (mlops_ide.machine.state.compile_cache)."""
    bin_dir = ensure_folder(code_server_bin(settings), 0o755)
    shim = bin_dir / "code-server"
    cache = compile_cache.cache_folder(tools.code_server)
    variable = compile_cache.VARIABLE
    uses_cache = f': "${{{variable}:={cache}}}"\nexport {variable}\n' if cache else ""
    text = f'#!/bin/sh\n{uses_cache}exec "{tools.node24}" "{tools.code_server}" "$@"\n'
    if not shim.exists() or shim.read_text() != text:
        shim.write_text(text)
        shim.chmod(0o755)
    return bin_dir


def write_user_tools(settings: Settings, tools: Tools, dag_env: dict[str, str]) -> Path:
    """Beside the code-server shim, first on the user servers' PATH: `python` & co. of the
    pipeline's environment and `mlops-ide` (mlops_ide.workspace.user_tools; `dag_env`: the DAGs'
    settings for `mlops-ide dag test`); and a JupyterLab kernel on that Python."""
    from mlops_ide.workspace import user_tools

    bin_dir = user_tools.write(
        code_server_bin(settings), tools.pipeline_python, tools.airflow_python, code_lib(settings), dag_env
    )
    kernel = ensure_folder(kernels_folder(settings) / "kernels" / "python3", 0o755)
    for folder in (kernels_folder(settings), kernel.parent):
        folder.chmod(0o755)
    spec = user_tools.kernel_spec(bin_dir / "python")
    if not (kernel / "kernel.json").exists() or (kernel / "kernel.json").read_text() != spec:
        (kernel / "kernel.json").write_text(spec)
    (kernel / "kernel.json").chmod(0o644)
    return bin_dir
