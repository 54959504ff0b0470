"""Run by path in Airflow's virtualenv (PYTHONPATH: the checkout's src/, where
airflow_local_settings is): Airflow's own bundle and DagBag code on preview slots, step by
step, as the DAG processor and a task's start use them, the cluster policy included.

    python preview_slot_probe.py '<JSON list of steps>'

A step: {"registry": [entry dicts] (written first; absent: left as it is),
"bundle": "preview-1", "classpath": "...PreviewSlotBundle" (default), "kwargs": {...},
"version": null | "<sha>", "do": "initialize" | "refresh" | "parse", "git": [arguments of a git
command run first in the remote, e.g. to delete a branch]}. A bundle without a
version is kept from step to step, like the DAG processor's. Prints one JSON line per step:
{"path", "version", "dags": {id: {"tags", "paused", "env": {task: experiment}}}, "errors",
"identity": {id: {"token": {task: MLFLOW_TRACKING_TOKEN as the task holds it (a pod's from a
Secret: "secret <name>/<key>")}, "templated":
{task: whether Airflow renders that field}, "stored": the DAG serialized as the DAG processor
stores it}}}; with "start": true in the step, also "started": {id: {task: what the task's process
holds after its pre-execute hook ran there, as at a task's start: {"experiment", "preview_token":
whether MLFLOW_TRACKING_TOKEN is AIRFLOW_VAR_MLFLOW_PREVIEW_TOKEN's (never the token), "env_vars":
an ExternalPythonOperator's names, "returned": a plain `@task`'s result, "error"}}}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from airflow._shared.module_loading import import_string
from airflow.dag_processing.bundles.base import unpack_bundle_version
from airflow.dag_processing.dagbag import BundleDagBag

from mlops_ide.in_airflow.preview_policy import EXPERIMENT_VARIABLE, TOKEN_VARIABLE
from mlops_ide.portable import previews

CONNECTION = "AIRFLOW_CONN_PREVIEW_GIT"  # the test's git connection: the remote's path as its host
DEFAULT_CLASS = "mlops_ide.in_airflow.preview_bundle.PreviewSlotBundle"


def experiment_of(task, variable: str = EXPERIMENT_VARIABLE) -> str | None:
    for field in ("env_vars", "environment"):
        value = getattr(task, field, None)
        if isinstance(value, dict):
            return value.get(variable)
        if isinstance(value, list):
            return next((shown(item) for item in value if item.name == variable), None)
    return None


def shown(item) -> str | None:
    """A V1EnvVar's value, or `secret <name>/<key>` for one a pod takes from a Secret."""
    source = item.value_from and item.value_from.secret_key_ref
    return f"secret {source.name}/{source.key}" if source else item.value


def templated(task) -> bool:
    return any(field in task.template_fields for field in ("env_vars", "environment") if hasattr(task, field))


def identity_of(dag) -> dict:
    from airflow.serialization.serialized_objects import DagSerialization

    return {
        "token": {task.task_id: experiment_of(task, TOKEN_VARIABLE) for task in dag.tasks},
        "templated": {task.task_id: templated(task) for task in dag.tasks},
        "stored": json.dumps(DagSerialization.to_dict(dag), default=str),
    }


PREVIEW_TOKEN = "AIRFLOW_VAR_MLFLOW_PREVIEW_TOKEN"


def started(task) -> dict:
    """The task's pre-execute hook (the policy's, chained with the author's) run in this
    process, as the task runner does before `execute`; the environment restored after."""
    saved = dict(os.environ)
    hook = (
        task.partial_kwargs.get("pre_execute") if hasattr(task, "partial_kwargs") else task._pre_execute_hook
    )
    seen: dict = {}
    try:
        if hook is not None:
            hook({"task": task})
        seen["experiment"] = os.environ.get(EXPERIMENT_VARIABLE)
        seen["preview_token"] = os.environ.get(TOKEN_VARIABLE) == os.environ.get(PREVIEW_TOKEN)
        if isinstance(getattr(task, "env_vars", None), dict):
            seen["env_vars"] = sorted(task.env_vars)
        if type(task).__name__ == "_PythonDecoratedOperator":  # a plain @task: run its function
            seen["returned"] = task.python_callable()
    except Exception as error:
        seen["error"] = str(error)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return seen


def parsed(bundle, start: bool = False) -> dict:
    bag = BundleDagBag(
        dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name, safe_mode=False
    )
    return {
        "dags": {
            dag_id: {
                "tags": sorted(dag.tags),
                "paused": dag.is_paused_upon_creation,
                "env": {task.task_id: experiment_of(task) for task in dag.tasks},
            }
            for dag_id, dag in bag.dags.items()
        },
        "errors": bag.import_errors,
        "identity": {dag_id: identity_of(dag) for dag_id, dag in bag.dags.items()},
        **(
            {"started": {i: {t.task_id: started(t) for t in dag.tasks} for i, dag in bag.dags.items()}}
            if start
            else {}
        ),
    }


def main(steps: list[dict]) -> None:
    kept: dict[str, object] = {}
    for step in steps:
        if "git" in step:
            remote = json.loads(os.environ[CONNECTION])["host"]
            subprocess.run(["git", "-C", remote, *step["git"]], check=True, capture_output=True)
        if "registry" in step:
            entries = [previews.Entry(**item) for item in step["registry"]]
            previews.write(Path(os.environ[previews.ENV]), entries)
        name, version = step.get("bundle", "preview-1"), step.get("version")
        bundle = kept.get(name) if version is None else None
        if bundle is None:
            kind = import_string(step.get("classpath", DEFAULT_CLASS))
            bundle = kind(name=name, version=version, **step.get("kwargs", {}))
            if version is None:
                kept[name] = bundle
        if step["do"] == "initialize":
            bundle.initialize()
        elif step["do"] == "refresh":
            bundle.refresh()
        found = parsed(bundle, start=step.get("start", False))
        current, _ = unpack_bundle_version(bundle.get_current_version(), bundle)
        print(json.dumps({"path": str(bundle.path), "version": current, **found}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
