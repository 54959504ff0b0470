"""CNN skin-lesion classification: preprocess once, train three models in parallel,
register each in MLflow, make the best the `champion`, and have serving load it.

Where the steps run is one setting, MLOPS_IDE_PIPELINE_RUNNER: `local` runs them in the
pipeline's virtualenv, `kubernetes` in pods of images/pipeline (see pipeline_steps.py).
The step functions are the same (src/skin_cancer/tasks.py), and they come from this
commit of the repository, like the DAG.
"""

from __future__ import annotations

from airflow.sdk import Param, dag
from pipeline_steps import DAG_DEFAULTS, DATA_ROOT, SERVING_URL, WORK_ROOT, Expr, output, step

KINDS = ("basic_cnn", "crossval", "resnet50")


def epochs_of(kind: str) -> int | Expr:
    return 2 if kind == "resnet50" else Expr("params.epochs")  # ResNet50 is slow on CPUs


@dag(
    dag_id="cnn_skin_cancer_workflow",
    tags=["skin-cancer", "training", "mlflow"],
    doc_md=__doc__,
    # Typed: a run asked for with "5" is refused, not given a string that a pod would keep.
    params={
        "epochs": Param(10, type="integer", minimum=1),
        "image_size": Param(64, type="integer", minimum=16),
    },
    **DAG_DEFAULTS,
)
def cnn_skin_cancer_workflow():
    arrays = step(
        "preprocess",
        "preprocess",
        {
            "data_root": DATA_ROOT,
            "work_root": WORK_ROOT,
            "run_id": Expr("run_id"),
            "image_size": Expr("params.image_size"),
        },
    )
    trained = [
        step(
            f"train_{kind}",
            "train",
            {
                "kind": kind,
                "arrays": output(arrays),
                "run_id": Expr("run_id"),
                "params": {"epochs": epochs_of(kind)},
            },
        )
        for kind in KINDS
    ]
    champion = step("compare", "compare", {"results": [output(model) for model in trained]})
    reload = step("reload_serving", "reload_serving", {"serving_url": SERVING_URL})
    champion >> reload


cnn_skin_cancer_workflow()
