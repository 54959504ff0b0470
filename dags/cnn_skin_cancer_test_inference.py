"""Check the served champion: send held-out test images to the serving API and fail on a
missing answer or on fewer than `min_accuracy` right. Runs where the workflow's steps run
(MLOPS_IDE_PIPELINE_RUNNER, see pipeline_steps.py), with the same step functions
(src/skin_cancer/tasks.py).
"""

from __future__ import annotations

from airflow.sdk import Param, dag
from pipeline_steps import DAG_DEFAULTS, DATA_ROOT, SERVING_URL, Expr, step


@dag(
    dag_id="cnn_skin_cancer_test_inference",
    tags=["skin-cancer", "serving", "test"],
    doc_md=__doc__,
    params={
        "images": Param(20, type="integer", minimum=1),
        "min_accuracy": Param(0.9, type="number", minimum=0, maximum=1),
    },
    **DAG_DEFAULTS,
)
def cnn_skin_cancer_test_inference():
    step(
        "check_serving",
        "check_serving",
        {
            "serving_url": SERVING_URL,
            "data_root": DATA_ROOT,
            "limit": Expr("params.images"),
            "min_accuracy": Expr("params.min_accuracy"),
        },
    )


cnn_skin_cancer_test_inference()
