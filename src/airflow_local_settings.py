"""Airflow's local settings module (found on the PYTHONPATH the platform gives Airflow's
processes; on Kubernetes the chart's `airflowLocalSettings`, deploy/airflow/values.yaml):
the cluster policy that renames, tags and pauses the DAGs of preview slots
(mlops_ide/in_airflow/preview_policy.py)."""

from mlops_ide.in_airflow.preview_policy import dag_policy

__all__ = ["dag_policy"]
