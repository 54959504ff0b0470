"""The workflow's steps, one function each, the same wherever they run: called by the DAG's
`@task.external_python` tasks in the pipeline's virtualenv, or as

    python -m skin_cancer.tasks <step> '<json keyword arguments>'

in a pod from images/pipeline. Each takes and returns plain JSON-able values.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from dataclasses import asdict, replace
from pathlib import Path

import mlflow

from skin_cancer import CLASSES
from skin_cancer.data import list_split
from skin_cancer.preprocess import log_stats, preprocess
from skin_cancer.train import TrainParams, train

EXPERIMENT = "cnn_skin_cancer"
# A preview (a branch `preview/<person>/<topic>`, run by the platform as its own DAGs) records to
# the experiment named after its branch; the platform sets MLFLOW_EXPERIMENT_NAME for its tasks.
# Its versions never become `champion` (MLflow's gate refuses it too) and nothing is served.
PREVIEW_PREFIX = "preview/"


def experiment_name() -> str:
    """Where this task's runs record: MLFLOW_EXPERIMENT_NAME when set (a preview's tasks get
    `preview/<person>/<topic>`), else the workflow's own experiment."""
    return os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT


def in_preview() -> bool:
    """Whether these tasks run for a preview: their experiment is named `preview/...` (in any
    case, as MLflow's gate reads it)."""
    return experiment_name().strip().casefold().startswith(PREVIEW_PREFIX)


def preprocess_step(data_root: str, work_root: str, run_id: str, image_size: int = 64) -> str:
    """Arrays for this DAG run only, in `<work_root>/<run_id>/arrays`; returns that folder."""
    out = Path(work_root) / safe_name(run_id) / "arrays"
    mlflow.set_experiment(experiment_name())
    with mlflow.start_run(run_name="preprocess", tags={"airflow_run_id": run_id}):
        stats = preprocess(data_root, out, size=image_size)
        log_stats(stats)
    return str(out)


def train_step(kind: str, arrays: str, run_id: str, params: dict | None = None) -> dict:
    """Train and register one model kind; returns its version and test accuracy."""
    mlflow.set_experiment(experiment_name())
    result = train(
        kind, Path(arrays), replace(TrainParams(), **(params or {})), tags={"airflow_run_id": run_id}
    )
    return asdict(result)


def compare_step(results: list[dict]) -> dict:
    """The best of this run's versions becomes `champion`; in a preview, it is named only."""
    from skin_cancer.compare import best_of, choose_champion

    versions = [result["version"] for result in results]
    if in_preview():
        version, accuracy = best_of(versions)
        print(
            f"preview ({experiment_name()}): version {version} is this run's best "
            f"(test accuracy {accuracy:.3f}); it does not become `champion` and serving is unchanged. "
            "Merge the branch into the tracked branch for its workflow to train and compare.",
            flush=True,
        )
    else:
        version, accuracy = choose_champion(versions)
    kind = next(result["kind"] for result in results if result["version"] == version)
    return {"version": version, "kind": kind, "test_accuracy": accuracy, "champion": not in_preview()}


def reload_serving_step(serving_url: str) -> dict:
    """Tell the serving API to load the new champion now (it would within its poll anyway);
    in a preview, nothing: serving keeps the tracked branch's champion."""
    if in_preview():
        print(
            f"preview ({experiment_name()}): serving is not reloaded "
            "(it serves the tracked branch's champion)",
            flush=True,
        )
        return {"changed": False, "preview": experiment_name()}
    request = urllib.request.Request(f"{serving_url.rstrip('/')}/reload", method="POST")
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def check_serving_step(serving_url: str, data_root: str, limit: int = 20, min_accuracy: float = 0.9) -> dict:
    """Send test images to the serving API; fail on a missing answer or too many wrong ones."""
    listed = list_split(data_root, "test")
    chosen = list(range(0, len(listed.paths), max(1, len(listed.paths) // limit)))[:limit]
    right = 0
    for index in chosen:
        path = listed.paths[index]
        answer = post_image(f"{serving_url.rstrip('/')}/predict", path)
        if answer.get("label") not in CLASSES:
            raise RuntimeError(f"the serving API gave no label for {path}: {answer}")
        right += answer["label"] == CLASSES[listed.labels[index]]
    accuracy = right / len(chosen)
    if accuracy < min_accuracy:
        raise RuntimeError(f"the serving API got {right} of {len(chosen)} test images right ({accuracy:.0%})")
    return {"images": len(chosen), "right": right, "accuracy": accuracy}


def post_image(url: str, path: str) -> dict:
    import fsspec

    with fsspec.open(path, "rb") as handle:
        data = handle.read()
    boundary = "skin-cancer-boundary"
    content_type = "image/png" if path.lower().endswith(".png") else "image/jpeg"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{Path(path).name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def safe_name(run_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)


STEPS = {
    "preprocess": preprocess_step,
    "train": train_step,
    "compare": compare_step,
    "reload_serving": reload_serving_step,
    "check_serving": check_serving_step,
}


# The line that carries a step's result (JSON) on its output, among whatever else the step
# and its libraries print, on stdout or stderr: dags/step_container.py looks for it.
RESULT_PREFIX = "mlops-ide step result: "


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in STEPS:
        print(
            f"usage: python -m skin_cancer.tasks {{{','.join(STEPS)}}} '<json keyword arguments>'",
            file=sys.stderr,
        )
        return 2
    result = STEPS[args[0]](**json.loads(args[1]))
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    xcom = Path("/airflow/xcom")  # in a KubernetesPodOperator pod with do_xcom_push
    if xcom.is_dir():
        (xcom / "return.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
