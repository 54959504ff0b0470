"""Run in Airflow's virtualenv by test_dag_integrity: load the DAGs with
MLOPS_IDE_PIPELINE_RUNNER=kubernetes and render every pod task's JSON arguments with
stand-in XCom values, and build the pod each task would create. Prints
{"<dag>.<task>": {"step": ..., "arguments": ..., "image": ..., "pod": {...}}}."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.append(str(ROOT / "dags"))  # as Airflow's BundleDagBag does for the bundle's folder
os.environ["MLOPS_IDE_PIPELINE_RUNNER"] = "kubernetes"
os.environ["MLOPS_IDE_PIPELINE_NAMESPACE"] = "pipelines"  # else the hook asks a connection

from mlops_ide.dag_check import block_database, block_network  # noqa: E402

result = os.fdopen(os.dup(sys.stdout.fileno()), "w")
os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
block_database()
block_network()

import jinja2  # noqa: E402
from airflow.dag_processing.dagbag import DagBag  # noqa: E402
from kubernetes.client import ApiClient  # noqa: E402


class StandInTaskInstance:
    def xcom_pull(self, task_ids=None, key="return_value"):
        if task_ids.startswith("train_"):  # what train_step returns
            return {"kind": task_ids, "version": str(len(task_ids)), "test_accuracy": 0.9}
        return f"/work/{task_ids}/arrays"  # what preprocess_step returns


environment = jinja2.Environment(undefined=jinja2.StrictUndefined)
environment.filters["tojson"] = json.dumps
rendered = {}
bag = DagBag(dag_folder=ROOT / "dags", bundle_path=ROOT / "dags", safe_mode=False, load_op_links=False)
for dag in bag.dags.values():
    for task in dag.tasks:
        if task.task_type != "KubernetesPodOperator":
            continue
        text = environment.from_string(task.cmds[-1]).render(
            ti=StandInTaskInstance(), run_id="manual__test", params=dag.params.dump()
        )
        rendered[f"{dag.dag_id}.{task.task_id}"] = {
            "step": task.cmds[-2],
            "arguments": json.loads(text),
            "image": task.image,
            # the pod KubernetesPodOperator would create (dry run: no cluster, no connection)
            "pod": ApiClient().sanitize_for_serialization(task.build_pod_request_obj(None, dry_run=True)),
        }
result.write(json.dumps(rendered) + "\n")
result.flush()
