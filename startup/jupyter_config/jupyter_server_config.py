# The user server's Jupyter configuration (JUPYTER_CONFIG_PATH points here; the platform's,
# rewritten at each start): what counts as activity for the hub's idle culler.
# A user's own ~/.jupyter configuration is read after this one.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from jupyter_vscode_proxy import setup_vscode

c = get_config()  # noqa: F821 - given by Jupyter's config loader

# VS Code's traffic is not activity (an open tab talks all the time); what VS Code knows
# about the user is, through this extension.
c.ServerApp.jpserver_extensions = {"startup.server_activity": True}
# The entry jupyter-vscode-proxy registers, with its traffic left out of the server's
# activity; this one, from the configuration, takes /vscode/ first.
c.ServerProxy.servers = {"vscode": {**setup_vscode(), "update_last_activity": False}}
