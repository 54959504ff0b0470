# shellcheck shell=bash
# mlops-ide start hook, sourced by the docker-stacks start script (start.sh runs every
# *.sh in /usr/local/bin/before-notebook.d as the notebook user, just before the server).
# It clones or updates the pipeline repository in the user's home (never losing their
# work; see docs/startup-hook.md), writes VS Code's settings, and exports what
# jupyter-vscode-proxy needs. A failure here never stops the server from starting.
mlops_ide_env=$(PYTHONPATH="${MLOPS_IDE_STARTUP_DIR:-/opt/mlops-ide}" python -m startup.start --export) \
  && eval "$mlops_ide_env" \
  || echo "mlops-ide: the start hook failed (see above); starting the server anyway" >&2
unset mlops_ide_env
