"""Check the served champion: send held-out test images to the serving API and fail on a
missing answer or on fewer than `min_accuracy` right. Runs where the workflow's steps run
(MLOPS_IDE_PIPELINE_RUNNER), with the same step functions (src/skin_cancer/tasks.py).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from airflow.sdk import dag, task

RUNNER = os.environ.get("MLOPS_IDE_PIPELINE_RUNNER", "local")
PIPELINE_PYTHON = os.environ.get("MLOPS_IDE_PIPELINE_PYTHON", "python3")
# images/pipeline as .github/workflows/images.yml names it: <prefix>-pipeline:<tag>
# (MLOPS_IDE_IMAGE_PREFIX and MLOPS_IDE_IMAGE_TAG from deploy/settings.env).
PIPELINE_IMAGE = os.environ.get("MLOPS_IDE_PIPELINE_IMAGE") or "{}-pipeline:{}".format(
    os.environ.get("MLOPS_IDE_IMAGE_PREFIX", "ghcr.io/mlops-ide/mlops-ide"),
    os.environ.get("MLOPS_IDE_IMAGE_TAG", "main"),
)
DATA_ROOT = os.environ.get("MLOPS_IDE_DATA_ROOT", "/data/skin-lesions")
SERVING_URL = os.environ.get(
    "MLOPS_IDE_SERVING_URL", "http://serving:8500" if RUNNER == "kubernetes" else "http://127.0.0.1:8500"
)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_step(src: str, step: str, arguments: dict):
    """In the pipeline's interpreter: put this commit's src/ first and run one step."""
    import sys

    sys.path.insert(0, src)
    from skin_cancer.tasks import STEPS

    return STEPS[step](**arguments)


def pipeline_pod_settings() -> dict:
    """What every pipeline pod gets: MLflow, the shared data volume, limits, non-root.
    (Kept in step with the copy in cnn_skin_cancer_workflow.py.)"""
    from kubernetes.client import models as k8s

    return {
        "namespace": os.environ.get("MLOPS_IDE_PIPELINE_NAMESPACE") or None,
        "env_vars": {"MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI", "http://mlflow:5000")},
        "volumes": [
            k8s.V1Volume(
                name="pipeline-data",
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name=os.environ.get("MLOPS_IDE_PIPELINE_CLAIM", "pipeline-data")
                ),
            )
        ],
        "volume_mounts": [k8s.V1VolumeMount(name="pipeline-data", mount_path="/data")],
        "container_resources": k8s.V1ResourceRequirements(
            requests={"cpu": "1", "memory": "2Gi"}, limits={"cpu": "4", "memory": "8Gi"}
        ),
        "security_context": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
        "container_security_context": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }


@dag(
    dag_id="cnn_skin_cancer_test_inference",
    schedule=None,
    catchup=False,
    tags=["skin-cancer", "serving", "test"],
    doc_md=__doc__,
    params={"images": 20, "min_accuracy": 0.9},
    # Locally, "{{ params.images }}" must arrive as 20, not "20"; a pod gets JSON text.
    render_template_as_native_obj=RUNNER != "kubernetes",
)
def cnn_skin_cancer_test_inference():
    fixed = {"serving_url": SERVING_URL, "data_root": DATA_ROOT}
    if RUNNER == "kubernetes":
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        arguments = (
            json.dumps(fixed)[:-1]
            + ', "limit": {{ params.images }}, "min_accuracy": {{ params.min_accuracy }}}'
        )
        KubernetesPodOperator(
            task_id="check_serving",
            name="check-serving",
            image=PIPELINE_IMAGE,
            cmds=["python", "-m", "skin_cancer.tasks", "check_serving", arguments],
            do_xcom_push=True,
            get_logs=True,
            on_finish_action="delete_succeeded_pod",
            **pipeline_pod_settings(),
        )
    else:
        arguments = {**fixed, "limit": "{{ params.images }}", "min_accuracy": "{{ params.min_accuracy }}"}
        task.external_python(task_id="check_serving", python=PIPELINE_PYTHON, expect_airflow=False)(run_step)(
            SRC, "check_serving", arguments
        )


cnn_skin_cancer_test_inference()
