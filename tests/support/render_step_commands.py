"""Run in Airflow's virtualenv by test_dag_integrity: load the DAGs with
MLOPS_IDE_PIPELINE_RUNNER set to the runner named on the command line (`kubernetes` or
`docker`), render every step's JSON arguments with stand-in XCom values, and say what
each task would start: the pod (Kubernetes, dry run) or the container's settings (Docker).
With a preview branch as second argument (`preview/alice/lr`), every DAG first goes through
the previews' cluster policy as a DAG of that preview (in_airflow/preview_policy.py).
Prints {"<dag>.<task>": {"step", "arguments", "image", "pod" | "container",
"serialized"}}: "serialized" is the task as Airflow stores it in its database."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNNER = sys.argv[1]
PREVIEW = sys.argv[2] if len(sys.argv) > 2 else None
sys.path.insert(0, str(ROOT / "src"))
sys.path.append(str(ROOT / "dags"))  # as Airflow's BundleDagBag does for the bundle's folder
os.environ["MLOPS_IDE_PIPELINE_RUNNER"] = RUNNER
os.environ["MLOPS_IDE_PIPELINE_NAMESPACE"] = "pipelines"  # else the hook asks a connection

from mlops_ide.portable.dag_check import block_database, block_network  # noqa: E402

result = os.fdopen(os.dup(sys.stdout.fileno()), "w")
os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
block_database()
block_network()

import jinja2  # noqa: E402
from airflow.dag_processing.dagbag import DagBag  # noqa: E402
from airflow.serialization.serialized_objects import DagSerialization  # noqa: E402
from kubernetes.client import ApiClient  # noqa: E402

from mlops_ide.in_airflow import preview_policy  # noqa: E402
from mlops_ide.portable import previews  # noqa: E402


class StandInTaskInstance:
    def xcom_pull(self, task_ids=None, key="return_value"):
        if task_ids.startswith("train_"):  # what train_step returns
            return {"kind": task_ids, "version": str(len(task_ids)), "test_accuracy": 0.9}
        return f"/work/{task_ids}/arrays"  # what preprocess_step returns


def started(task) -> dict:
    """The pod or the container the task would start."""
    if task.task_type == "KubernetesPodOperator":
        # dry run: no cluster, no connection
        return {"pod": ApiClient().sanitize_for_serialization(task.build_pod_request_obj(None, dry_run=True))}
    return {
        "container": {
            "mounts": task.mounts,
            "environment": task.environment,
            "private_environment": task._private_environment,
            "network_mode": task.network_mode,
            "auto_remove": task.auto_remove,
            "mount_tmp_dir": task.mount_tmp_dir,
            "docker_url": task.docker_url,
            "user": task.user,
            "privileged": task.privileged,
        }
    }


environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
environment.filters["tojson"] = json.dumps
rendered = {}
bag = DagBag(dag_folder=ROOT / "dags", bundle_path=ROOT / "dags", safe_mode=False, load_op_links=False)
for dag in bag.dags.values():
    if PREVIEW:  # as the DAG processor's policy does for a slot's file (its id changes too)
        preview = previews.parse_branch(PREVIEW)
        preview_policy.rename(
            dag,
            previews.Entry(
                "preview-1", PREVIEW, preview.person, preview.topic, "a" * 40, preview.person, 1.0, 1.0
            ),
        )
    serialized = DagSerialization.to_dict(dag)["dag"]["tasks"]
    for task in dag.tasks:
        if task.task_type not in ("KubernetesPodOperator", "StepContainer"):
            continue
        command = task.cmds if task.task_type == "KubernetesPodOperator" else task.command
        text = environment.from_string(command[-1]).render(
            ti=StandInTaskInstance(), run_id="manual__test", params=dag.params.dump()
        )
        rendered[f"{dag.dag_id}.{task.task_id}"] = {
            "step": command[-2],
            "arguments": json.loads(text),
            "image": task.image,
            **started(task),
            "serialized": json.dumps([t for t in serialized if t["__var"]["task_id"] == task.task_id]),
        }
result.write(json.dumps(rendered, default=repr) + "\n")
result.flush()
