"""The OS accounts of the components that run apart (as root), with the folders each
writes handed over to it."""

from __future__ import annotations

import pwd
from pathlib import Path

from mlops_ide import names
from mlops_ide.machine import os_accounts
from mlops_ide.machine.state.layout import (
    SHARED_WITH_AIRFLOW_API,
    airflow_api_home,
    dag_check_folder,
    mlflow_folder,
    pipeline_home,
)
from mlops_ide.settings import Settings

PIPELINE_FOLDERS = ("airflow", "data", "pipeline-runs")  # what the pipeline's account writes
# the dataset: data scientists read it (their notebooks, `mlops-ide dag test`); the pipeline writes it
READ_BY_USERS = ("data",)


def component_accounts(settings: Settings) -> dict[str, pwd.struct_passwd]:
    """As root: the OS accounts of the components that run apart, by name, with the
    pipeline's folders handed over to its account and MLflow's to MLflow's (once; see
    os_accounts.ensure_home), each with this state folder's folder as its HOME."""

    def with_home(account: pwd.struct_passwd, home: Path) -> pwd.struct_passwd:
        os_accounts.ensure_home(home, account.pw_uid, account.pw_gid)
        return pwd.struct_passwd((*account[:5], str(home), *account[6:]))

    pipeline = os_accounts.ensure_component_account(names.PIPELINE_ACCOUNT)
    for folder in (settings.home / name for name in PIPELINE_FOLDERS):
        os_accounts.ensure_home(folder, pipeline.pw_uid, pipeline.pw_gid)
    for name in READ_BY_USERS:
        (settings.home / name).chmod(0o755)
    (settings.home / "airflow").chmod(SHARED_WITH_AIRFLOW_API)
    mlflow = os_accounts.ensure_component_account(names.MLFLOW_ACCOUNT)
    if mlflow_folder(settings).is_dir() and mlflow_folder(settings).stat().st_uid != mlflow.pw_uid:
        # the pipeline's in earlier versions, which a DAG could fill with links: walked safely
        os_accounts.own_tree(
            mlflow_folder(settings),
            mlflow.pw_uid,
            mlflow.pw_gid,
            folders=0o700,
            executables=0o700,
            files=0o600,
        )
    return {
        names.PIPELINE_ACCOUNT: with_home(pipeline, pipeline_home(settings)),
        names.GIT_ACCOUNT: os_accounts.ensure_component_account(names.GIT_ACCOUNT),
        names.DAG_CHECK_ACCOUNT: with_home(
            os_accounts.ensure_component_account(names.DAG_CHECK_ACCOUNT), dag_check_folder(settings)
        ),
        names.AIRFLOW_API_ACCOUNT: with_home(
            os_accounts.ensure_component_account(names.AIRFLOW_API_ACCOUNT), airflow_api_home(settings)
        ),
        names.MLFLOW_ACCOUNT: with_home(mlflow, mlflow_folder(settings)),
    }
