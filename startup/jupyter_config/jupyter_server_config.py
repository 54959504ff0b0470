# The user server's Jupyter configuration (JUPYTER_CONFIG_PATH points here; the platform's,
# rewritten at each start): what counts as activity for the hub's idle culler.
# A user's own ~/.jupyter configuration is read after this one.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from jupyter_vscode_proxy import setup_vscode

from startup import vscode_early

c = get_config()  # noqa: F821 - given by Jupyter's config loader

# VS Code's traffic is not activity (an open tab talks all the time); what VS Code knows
# about the user is, through this extension.
c.ServerApp.jpserver_extensions = {"startup.server_activity": True}
# The entry jupyter-vscode-proxy registers, with its traffic left out of the server's
# activity; this one, from the configuration, takes /vscode/ first. Its code-server starts
# now when the start wrapper asks (startup/vscode_early.py), not at the first request.
c.ServerProxy.servers = {
    "vscode": vscode_early.proxy_entry({**setup_vscode(), "update_last_activity": False})
}

# What a VS Code user never needs, paid at every server start (bench/many_users.py):
# - JupyterLab asks yarn for the npm registry when it is imported (`node yarn.js config`:
#   ~0.3 s of CPU, ~0.5 s of waiting), for its extension manager only; that manager is
#   read-only here (the environment is root's: nobody installs extensions from JupyterLab).
#   An empty yarn configuration is what JupyterLab itself uses when Node is missing.
c.LabApp.extension_manager = "readonly"
try:
    import jupyterlab.commands as lab_commands
except ImportError:  # a server without JupyterLab
    lab_commands = None
if lab_commands is not None and hasattr(lab_commands, "_yarn_config"):
    lab_commands._yarn_config = lambda logger: {"yarn config": {}, "npm config": {}}
# - jupyter-lsp looks for Node language servers (`npm prefix -g`) at each start; there are
#   none for JupyterLab here: VS Code brings its own.
c.LanguageServerManager.autodetect = False
