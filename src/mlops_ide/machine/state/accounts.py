"""The OS accounts of the components that run apart (as root), with the folders each
writes handed over to it."""

from __future__ import annotations

import pwd

from mlops_ide import names
from mlops_ide.machine import os_accounts
from mlops_ide.machine.state.layout import dag_check_folder, pipeline_home
from mlops_ide.settings import Settings

PIPELINE_FOLDERS = ("airflow", "mlflow", "data", "pipeline-runs")  # what the pipeline's account writes


# the dataset: data scientists read it (their notebooks, `mlops-ide dag test`); the pipeline writes it
READ_BY_USERS = ("data",)


def component_accounts(settings: Settings) -> dict[str, pwd.struct_passwd]:
    """As root: the OS accounts of the components that run apart, by name, with the pipeline's
    folders handed over to its account (once; see os_accounts.ensure_home)."""
    pipeline = os_accounts.ensure_component_account(names.PIPELINE_ACCOUNT)
    home = pipeline_home(settings)
    for folder in (home, *(settings.home / name for name in PIPELINE_FOLDERS)):
        os_accounts.ensure_home(folder, pipeline.pw_uid, pipeline.pw_gid)
    for name in READ_BY_USERS:
        (settings.home / name).chmod(0o755)
    writer = os_accounts.ensure_component_account(names.GIT_ACCOUNT)
    checker = os_accounts.ensure_component_account(names.DAG_CHECK_ACCOUNT)
    os_accounts.ensure_home(dag_check_folder(settings), checker.pw_uid, checker.pw_gid)
    # with this state folder's home for the pipeline's processes (their HOME)
    pipeline = pwd.struct_passwd((*pipeline[:5], str(home), *pipeline[6:]))
    checker = pwd.struct_passwd((*checker[:5], str(dag_check_folder(settings)), *checker[6:]))
    return {names.PIPELINE_ACCOUNT: pipeline, names.GIT_ACCOUNT: writer, names.DAG_CHECK_ACCOUNT: checker}
