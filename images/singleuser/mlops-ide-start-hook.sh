# shellcheck shell=bash
# mlops-ide start hook, sourced by the docker-stacks start script (start.sh runs every
# *.sh in /usr/local/bin/before-notebook.d as the notebook user, just before the server).
# It clones or updates the pipeline repository in the user's home (never losing their
# work; see docs/startup-hook.md), writes VS Code's settings, and exports what
# jupyter-vscode-proxy needs. A failure here never stops the server from starting.
# The startup code runs on the server's Python (conda's in the image: GitPython is there),
# never on the `python` first on PATH, which is the pipeline's.
mlops_ide_env=$(PYTHONPATH="${MLOPS_IDE_STARTUP_DIR:-/opt/mlops-ide}" "${CONDA_DIR:+$CONDA_DIR/bin/}python" -m startup.start --export) \
  && eval "$mlops_ide_env" \
  || echo "mlops-ide: the start hook failed (see above); starting the server anyway" >&2
unset mlops_ide_env
# The user's commands first on PATH for the server and everything it starts (VS Code, its
# terminals, git's hooks, JupyterLab's terminals): 10activate-conda-env.sh, which runs
# before this hook, has put conda's bin in front of the image's PATH.
mlops_ide_user_bin="${MLOPS_IDE_STARTUP_DIR:-/opt/mlops-ide}/user-bin"
if [ -d "$mlops_ide_user_bin" ]; then
  case ":$PATH:" in
    ":$mlops_ide_user_bin:"*) ;;
    *) export PATH="$mlops_ide_user_bin:$PATH" ;;
  esac
fi
unset mlops_ide_user_bin
