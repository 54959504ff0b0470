#!/usr/bin/env bash
# Installs what the platform (or its tests) needs and is missing, and nothing else.
#
#   scripts/install.sh platform   hub virtualenv, configurable-http-proxy, Node 24, code-server,
#                                 the Airflow + MLflow virtualenv, the pipeline virtualenv
#   scripts/install.sh test       the above, plus Debian's Chromium for the browser tests,
#                                 kubectl (Debian's kubernetes-client) for `kubectl kustomize`
#                                 and the security scanners' virtualenv (scripts/scan.py)
#   scripts/install.sh images     only the container engine of `make images`: Debian's podman,
#                                 runc, mmdebstrap and uidmap (root); its configuration is ours, in
#                                 images/engine/, read through CONTAINERS_CONF by mlops_ide.supervisor.images:
#                                 nothing is written into /etc (docs/containers.md)
#
# Everything lands in $MLOPS_IDE_TOOLS_DIR (default /opt/mlops-ide as root, where the users'
# own OS accounts can run the tools; ~/.cache/mlops-ide otherwise), in folders named
# after a hash of what they were built from, so a second run installs nothing, a changed
# requirements file gets a fresh environment, and every checkout of the same commit
# (a CI clone included) reuses the same environments.
set -euo pipefail
umask 022  # the tools are run by every user account

here=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" = 0 ]; then default_tools=/opt/mlops-ide; else default_tools=$HOME/.cache/mlops-ide; fi
tools=${MLOPS_IDE_TOOLS_DIR:-$default_tools}
what=${1:-platform}
case "$what" in platform|test|images) ;; *) echo "usage: $0 platform|test|images" >&2; exit 2 ;; esac

NODE24_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1
CHP_VERSION=5.3.0

step=0
steps=7; [ "$what" = test ] && steps=9
progress() { step=$((step + 1)); printf '==> [%d/%d] %s\n' "$step" "$steps" "$*"; }
done_already() { printf '    up to date (%s)\n' "$1"; }

hash_of() { cat "$@" | sha256sum | cut -c1-12; }

apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -eq 0 ]; then done_already "apt: $*"; return; fi
  echo "    apt-get install ${missing[*]}"
  local as_root=()
  if [ "$(id -u)" != 0 ]; then
    if ! sudo -n true 2>/dev/null; then
      echo "error: Debian packages ${missing[*]} are missing; install them as root (apt-get install ${missing[*]})" >&2
      exit 1
    fi
    as_root=(sudo -n)  # a CI runner's user with passwordless sudo
  fi
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

make_venv() {  # make_venv NAME REQUIREMENTS... (in $venv_python, default python3); sets $venv
  local name=$1; shift
  local python=${venv_python:-python3}
  venv="$tools/venv-$name-$(hash_of "$@" <("$python" --version))"
  if [ -x "$venv/bin/python" ] && [ -f "$venv/.complete" ]; then done_already "$venv"; return; fi
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip 2> >(grep -v "is ignored: it is neither" >&2)
  local args=()
  for r in "$@"; do args+=(-r "$r"); done
  "$venv/bin/pip" install -q --disable-pip-version-check "${args[@]}" 2> >(grep -v "is ignored: it is neither" >&2)
  touch "$venv/.complete"
}

npm_install() {  # npm_install DIR PACKAGE@VERSION [npm flags...]
  local dir=$1 pkg=$2; shift 2
  if [ -f "$dir/.complete" ]; then done_already "$dir"; return; fi
  rm -rf "$dir"; mkdir -p "$dir"
  npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "$@" "$pkg" >/dev/null
  touch "$dir/.complete"
}

if [ "$what" = images ]; then
  steps=1
  progress "container engine: podman with runc (crun fails here on cgroups and rlimits), mmdebstrap, uidmap"
  # Root's podman on ext4 (builds): the kernel's overlay, no fuse-overlayfs. uidmap: the
  # pipeline's own rootless engine (MLOPS_IDE_PIPELINE_RUNNER=docker; its subordinate IDs
  # are given by the platform when it starts it, src/mlops_ide/supervisor/pipeline_engine.py).
  apt_install podman runc mmdebstrap uidmap
  exit 0
fi

mkdir -p "$tools"
chmod 755 "$tools"  # user servers run Python, Node and code-server from here

progress "Debian packages for code-server's native modules"
apt_install libkrb5-dev libxkbfile-dev libsecret-1-dev

progress "hub virtualenv (JupyterHub, jupyter-vscode-proxy, GitPython; pytest, playwright, ruff)"
# One environment for the hub, the user servers and the tests: what the tests run is
# what the platform runs. The test tools cost ~150 MB; a second environment, far more.
# As root, each user's server runs this environment as the user's own account, and the
# pipeline's services theirs as mlops-ide-pipeline: their Python must not live where other
# accounts cannot reach (pyenv's is below /root). Debian's is reachable.
if [ "$(id -u)" = 0 ] && [ -x /usr/bin/python3 ] \
   && [ "$(/usr/bin/python3 -c 'import sys; print(sys.version_info[:2])')" = "$(python3 -c 'import sys; print(sys.version_info[:2])')" ]; then
  venv_python=/usr/bin/python3
  apt_install python3-venv
fi
make_venv hub "$here/requirements/hub.txt" "$here/requirements/test.txt"
hub_venv=$venv
# jsonschema imports rfc3987-syntax (an optional format checker for `iri`, which no Jupyter
# schema uses) at import time, and it compiles ~35 Lark parsers there: about 1.2 s of every
# user server's start. Without it jsonschema skips that checker; `pip check` stays clean.
if "$hub_venv/bin/python" -c "import rfc3987_syntax" 2>/dev/null; then
  "$hub_venv/bin/pip" uninstall -y -q rfc3987-syntax 2> >(grep -v "is ignored: it is neither" >&2)
  echo "    removed rfc3987-syntax (1.2 s of every server start)"
fi

progress "configurable-http-proxy $CHP_VERSION"
npm_install "$tools/chp-$CHP_VERSION" "configurable-http-proxy@$CHP_VERSION"

progress "Node $NODE24_VERSION and code-server $CODE_SERVER_VERSION (first time: about 2 minutes)"
node24="$tools/node-$NODE24_VERSION"
npm_install "$node24" "node@$NODE24_VERSION"
# The npm package `node` pulls the real build in as node-linux-<arch>: bin/node and the
# include/node headers that node-gyp compiles code-server's native modules against.
node24_home=$(dirname "$(find "$node24/node_modules" -path '*/include/node/common.gypi' | head -n 1)")
node24_home=$(dirname "$(dirname "$node24_home")")
cs="$tools/code-server-$CODE_SERVER_VERSION"
# code-server's postinstall refuses root without unsafe-perm; this machine's npmrc says
# yes=false (which cancels node-pty's `npx node-gyp`) and points nodedir at Node 20.
PATH="$node24_home/bin:$PATH" npm_install "$cs" "code-server@$CODE_SERVER_VERSION" \
  --unsafe-perm=true --yes=true --nodedir="$node24_home"
# Our built-in extension: VS Code's own notion of the user's activity, for idle culling
# (startup/vscode_activity; images/singleuser installs it the same way). Copied each run.
builtin="$cs/node_modules/code-server/lib/vscode/extensions/mlops-ide-activity"
rm -rf "$builtin" && cp -r "$here/startup/vscode_activity" "$builtin" && chmod -R a+rX "$builtin"

progress "Airflow 3 and MLflow virtualenv (first time: a few minutes)"
make_venv airflow "$here/requirements/airflow.txt"
airflow_venv=$venv

progress "skin-lesion pipeline virtualenv (Keras 3 on PyTorch CPU, MLflow client, a Jupyter kernel for users)"
make_venv pipeline "$here/requirements/pipeline.txt" "$here/requirements/pipeline-test.txt"
pipeline_venv=$venv
# What users' servers add to it (a Jupyter kernel on it), installed into it in place: a few
# seconds, where a new virtualenv would download and install PyTorch again.
workspace_mark="$pipeline_venv/.workspace-$(hash_of "$here/requirements/pipeline-workspace.txt")"
if [ ! -f "$workspace_mark" ]; then
  "$pipeline_venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements/pipeline-workspace.txt" \
    2> >(grep -v "is ignored: it is neither" >&2)
  touch "$workspace_mark"
fi

progress "Streamlit app virtualenv"
make_venv app "$here/requirements/app.txt" "$here/requirements/app-test.txt"
app_venv=$venv

if [ "$what" = test ]; then
  progress "Debian's Chromium for browser tests; kubectl to build deploy/'s kustomization"
  apt_install chromium
  if command -v kubectl >/dev/null; then done_already "kubectl"; else apt_install kubernetes-client; fi
  progress "security scanners virtualenv: checkov, zizmor, bandit (first time: about a minute)"
  make_venv scanners "$here/requirements/scanners.txt"
  scanners_venv=$venv
fi

# One small file tells everything else where the tools are.
cat > "$here/.tools.env" <<ENV
MLOPS_IDE_PYTHON=$hub_venv/bin/python
MLOPS_IDE_CHP=$tools/chp-$CHP_VERSION/node_modules/.bin/configurable-http-proxy
MLOPS_IDE_NODE24=$node24_home/bin/node
MLOPS_IDE_CODE_SERVER=$cs/node_modules/code-server/out/node/entry.js
MLOPS_IDE_AIRFLOW_PYTHON=$airflow_venv/bin/python
MLOPS_IDE_PIPELINE_PYTHON=$pipeline_venv/bin/python
MLOPS_IDE_APP_PYTHON=$app_venv/bin/python
ENV
if [ "$what" = test ]; then echo "MLOPS_IDE_SCANNERS_PYTHON=$scanners_venv/bin/python" >> "$here/.tools.env"; fi
echo "    tools recorded in .tools.env"
