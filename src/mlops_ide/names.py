"""The names the platform's parts agree on: hub services and their URL prefixes and scopes,
the notes of the tokens a user's server gets, the OS accounts. The hub, the hub services,
the supervisor and Airflow's side all read them here, so none imports another's code for
a name. Imports nothing of ours (tests/unit/test_imports.py checks)."""

from __future__ import annotations

import re


def prefix(service: str) -> str:
    """Where the hub's proxy serves a hub service."""
    return f"/services/{service}/"


def access_scope(service: str) -> str:
    """The scope that lets a token (or a browser's login) reach a hub service."""
    return f"access:services!service={service}"


# Hub services (JupyterHub's): each served under its prefix, reached with its scope.
GIT = "git"  # the local remote over HTTP (hub_services/git_http.py)
GIT_PREFIX = prefix(GIT)
GIT_SCOPE = access_scope(GIT)
MLFLOW = "mlflow"  # MLflow's gate (hub_services/mlflow_gate.py)
MLFLOW_PREFIX = prefix(MLFLOW)
MLFLOW_SCOPE = access_scope(MLFLOW)
AIRFLOW = "airflow"  # Airflow's UI and API, logged in with the hub
AIRFLOW_PREFIX = prefix(AIRFLOW)
AIRFLOW_SCOPE = access_scope(AIRFLOW)
AIRFLOW_OAUTH_CLIENT_ID = f"service-{AIRFLOW}"
# Where Airflow's password login answers (the simple auth manager's /token and /token/cli):
# the push check calls it on 127.0.0.1; the hub's proxy sends these to a refusal, for through
# the public port it would be an ADMIN password prompt for everyone, with no lockout.
AIRFLOW_PASSWORD_LOGINS = (f"{AIRFLOW_PREFIX}auth/token/",)
PIPELINE = "pipeline"  # the identity of Airflow's tasks and serving: the one that may register models
# A preview's tasks (docs/previews.md): the pipeline's rights in MLflow but `champion`
PIPELINE_PREVIEW = "pipeline-preview"
ACCOUNTS = "accounts"  # `make users`' way into a running hub: may delete users, nothing else
PUSH_WEBHOOK = "push-webhook"  # GitHub's push events (Kubernetes mode)

# The notes of the tokens a user's server gets at each start, one hub service each.
GIT_TOKEN_NOTE = "mlops-ide: git, for the user's server"
MLFLOW_TOKEN_NOTE = "mlops-ide: mlflow, for the user's server"

# The DAG that is always valid: the push hook asks Airflow for its file token (see dags/).
ANCHOR_DAG = "platform_smoke_test"

# OS accounts (local mode as root): one per hub user, and one per component that runs apart.
USER_ACCOUNT_PREFIX = "jupyter-"  # + the hub name: a user's account
USERS_GROUP = "mlops-ide-users"
PIPELINE_ACCOUNT = "mlops-ide-pipeline"  # Airflow (but its API server), serving, the app
GIT_ACCOUNT = "mlops-ide-git"  # the git service: the only writer of the remote
DAG_CHECK_ACCOUNT = "mlops-ide-dagcheck"  # the DAG check's sandbox
AIRFLOW_API_ACCOUNT = "mlops-ide-airflow"  # Airflow's API server, in the pipeline's group
MLFLOW_ACCOUNT = "mlops-ide-mlflow"  # MLflow's server: its files are nobody else's
COMPONENT_ACCOUNTS = (PIPELINE_ACCOUNT, GIT_ACCOUNT, DAG_CHECK_ACCOUNT, AIRFLOW_API_ACCOUNT, MLFLOW_ACCOUNT)

# One pattern for every local username: hub logins, admins, the command line (and, with a
# prefix, OS account names, which may have at most 32 characters).
USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,22}")
