"""Kept for deployments until 0.3: Airflow configurations that name the auth manager by its
old dotted path (`mlops_ide.airflow_hub_auth.HubAuthManager`) keep working. It now lives in
mlops_ide/in_airflow/auth_manager.py; name that one."""

from mlops_ide.in_airflow.auth_manager import HubAuthManager

__all__ = ["HubAuthManager"]
