"""A team's own pipeline repository, as most teams have one (modelled on a real CNN
skin-lesion project): Airflow 2 DAG files in a sub-folder `cnn_skin_cancer/` beside the
code, not in `dags/`; `src/` (the package the DAGs' containers run), `Docker/`, CI, a README.

The DAG files use Airflow 2 spellings that Airflow 3 removed or moved, so none of them loads
in Airflow 3 as it is; ruff's AIR rules (what `mlops-ide dag upgrade` runs) then:
- airflow_docker_DAG.py: fixed entirely (`schedule_interval`, `airflow.models.Variable`,
  `airflow.operators.bash`, `from airflow import DAG`); loads after the upgrade.
- airflow_k8s_test_inference_DAG.py: fixed entirely (`airflow.kubernetes.secret.Secret` to
  the cncf.kubernetes provider's, `airflow.decorators.task`, `schedule_interval`); loads.
- airflow_k8s_workflow_DAG.py: NOT fixed automatically, as in real life: it imports the
  provider's own old module `airflow.providers.cncf.kubernetes.operators.kubernetes_pod`
  (now `...operators.pod`; ruff's rules cover Airflow core's moves, not a provider's) and
  `airflow.utils.dates.days_ago` (removed, no replacement): a person edits those lines.
All three read `Variable.get("MLFLOW_TRACKING_URI")` at module level, as the project does.

    write(folder)            the repository, committed with real git; its commit
    bare_remote(root)        a bare clone of it under root/, as a git server holds it
"""

from __future__ import annotations

import subprocess
from pathlib import Path

DAG_FOLDER = "cnn_skin_cancer"
BRANCH = "main"
REMOTE_NAME = "cnn-skin-cancer.git"
UPGRADES_CLEANLY = ("airflow_docker_DAG.py", "airflow_k8s_test_inference_DAG.py")
NEEDS_HAND = ("airflow_k8s_workflow_DAG.py",)
DAG_IDS = {  # what each file defines once it loads
    "airflow_docker_DAG.py": "cnn_skin_cancer_docker",
    "airflow_k8s_test_inference_DAG.py": "cnn_skin_cancer_k8s_test_inference",
    "airflow_k8s_workflow_DAG.py": "cnn_skin_cancer_k8s_workflow",
}

DOCKER_DAG = '''\
"""Preprocess, train and evaluate the CNN in the team's training image on the Docker host."""

from datetime import datetime, timedelta

from airflow import DAG
from airflow.models import Variable
from airflow.operators.bash import BashOperator
from airflow.providers.docker.operators.docker import DockerOperator
from docker.types import Mount

MLFLOW_TRACKING_URI = Variable.get("MLFLOW_TRACKING_URI")
IMAGE = "skin-cancer-train:latest"
DATA = Mount(source="/data/skin-cancer", target="/app/data", type="bind")

default_args = {"owner": "ml-team", "retries": 1, "retry_delay": timedelta(minutes=5)}

with DAG(
    dag_id="cnn_skin_cancer_docker",
    default_args=default_args,
    schedule_interval="@weekly",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["cnn", "docker"],
) as dag:
    common = {
        "image": IMAGE,
        "docker_url": "unix://var/run/docker.sock",
        "mounts": [DATA],
        "environment": {"MLFLOW_TRACKING_URI": MLFLOW_TRACKING_URI},
        "auto_remove": "success",
    }
    preprocess = DockerOperator(task_id="preprocess", command="python -m src.preprocessing", **common)
    train = DockerOperator(task_id="train", command="python -m src.train --epochs 10", **common)
    evaluate = DockerOperator(task_id="evaluate", command="python -m src.evaluate", **common)
    done = BashOperator(task_id="done", bash_command="echo 'model trained and logged'")

    preprocess >> train >> evaluate >> done
'''

K8S_WORKFLOW_DAG = '''\
"""The training workflow on the cluster: one pod per step, the data on a volume."""

from airflow import DAG
from airflow.kubernetes.secret import Secret
from airflow.models import Variable
from airflow.providers.cncf.kubernetes.operators.kubernetes_pod import KubernetesPodOperator
from airflow.utils.dates import days_ago
from kubernetes.client import models as k8s

MLFLOW_TRACKING_URI = Variable.get("MLFLOW_TRACKING_URI")
IMAGE = "ghcr.io/ml-team/skin-cancer-train:latest"

aws_key = Secret(deploy_type="env", deploy_target="AWS_ACCESS_KEY_ID", secret="aws-credentials", key="id")
aws_secret = Secret(
    deploy_type="env", deploy_target="AWS_SECRET_ACCESS_KEY", secret="aws-credentials", key="secret"
)
data = k8s.V1Volume(
    name="data", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name="skin-cancer")
)
data_mount = k8s.V1VolumeMount(name="data", mount_path="/app/data")

with DAG(
    dag_id="cnn_skin_cancer_k8s_workflow",
    schedule_interval="@daily",
    start_date=days_ago(1),
    catchup=False,
    tags=["cnn", "kubernetes"],
) as dag:

    def step(name: str, module: str) -> KubernetesPodOperator:
        return KubernetesPodOperator(
            task_id=name,
            name=f"skin-cancer-{name}",
            namespace="ml-team",
            image=IMAGE,
            cmds=["python", "-m", module],
            env_vars={"MLFLOW_TRACKING_URI": MLFLOW_TRACKING_URI},
            secrets=[aws_key, aws_secret],
            volumes=[data],
            volume_mounts=[data_mount],
            get_logs=True,
        )

    step("preprocess", "src.preprocessing") >> step("train", "src.train") >> step("evaluate", "src.evaluate")
'''

K8S_TEST_INFERENCE_DAG = '''\
"""Check the registered model on the held-out test images, in a pod, then report."""

from datetime import datetime

from airflow import DAG
from airflow.decorators import task
from airflow.kubernetes.secret import Secret
from airflow.models import Variable
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

MLFLOW_TRACKING_URI = Variable.get("MLFLOW_TRACKING_URI")

aws_key = Secret(deploy_type="env", deploy_target="AWS_ACCESS_KEY_ID", secret="aws-credentials", key="id")

with DAG(
    dag_id="cnn_skin_cancer_k8s_test_inference",
    schedule_interval=None,
    start_date=datetime(2024, 1, 1),
    catchup=False,
    tags=["cnn", "kubernetes", "inference"],
) as dag:
    test_inference = KubernetesPodOperator(
        task_id="test_inference",
        name="skin-cancer-test-inference",
        namespace="ml-team",
        image="ghcr.io/ml-team/skin-cancer-inference:latest",
        cmds=["python", "-m", "src.inference", "--split", "test"],
        env_vars={"MLFLOW_TRACKING_URI": MLFLOW_TRACKING_URI},
        secrets=[aws_key],
        get_logs=True,
        do_xcom_push=True,
    )

    @task
    def report(result: dict) -> None:
        print(f"test accuracy: {result.get('accuracy')}")

    report(test_inference.output)
'''

POD_TEMPLATE = """\
# The pod every KubernetesPodOperator task starts from (the DAGs set image and command).
apiVersion: v1
kind: Pod
metadata:
  name: skin-cancer-task
spec:
  restartPolicy: Never
  containers:
    - name: base
      resources:
        requests: {cpu: "1", memory: 4Gi}
        limits: {memory: 8Gi}
"""

FILES = {
    "README.md": """\
# CNN skin cancer classification

A convolutional network that tells benign from malignant skin lesions (ISIC images),
trained and tracked with MLflow, orchestrated with Airflow.

- `src/`: preprocessing, model, training, evaluation and inference
- `cnn_skin_cancer/`: the Airflow DAGs (Docker on one machine, Kubernetes on the cluster)
- `Docker/`: the training and inference images

    pip install -r requirements.txt
    python -m src.train --epochs 1
""",
    "requirements.txt": "tensorflow==2.15.0\nmlflow==2.12.1\nnumpy==1.26.4\npillow==10.3.0\nboto3==1.34.84\n",
    ".gitignore": "__pycache__/\n*.pyc\ndata/\nmlruns/\n.venv/\n",
    ".github/workflows/ci.yml": """\
name: ci
on: [push, pull_request]
jobs:
  test:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with: {python-version: "3.10"}
      - run: pip install -r requirements.txt ruff
      - run: ruff check src
      - run: python -m compileall -q src cnn_skin_cancer
""",
    "Docker/Dockerfile.train": """\
FROM python:3.10-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY src/ src/
CMD ["python", "-m", "src.train"]
""",
    "Docker/Dockerfile.inference": """\
FROM python:3.10-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY src/ src/
CMD ["python", "-m", "src.inference", "--split", "test"]
""",
    "src/__init__.py": "",
    "src/preprocessing.py": '''\
"""Resize the lesion images to 224x224 and split them into train, validation and test."""

from pathlib import Path

DATA = Path("data")
SIZE = (224, 224)


def split(names: list[str], seed: int = 42) -> dict[str, list[str]]:
    import random

    shuffled = sorted(names)
    random.Random(seed).shuffle(shuffled)
    cut, end = int(len(shuffled) * 0.7), int(len(shuffled) * 0.85)
    return {"train": shuffled[:cut], "val": shuffled[cut:end], "test": shuffled[end:]}


if __name__ == "__main__":
    print(split([path.name for path in (DATA / "raw").glob("*.jpg")]))
''',
    "src/model.py": '''\
"""The CNN: three convolution blocks and a sigmoid head (benign / malignant)."""


def build(input_shape=(224, 224, 3)):
    from tensorflow import keras

    return keras.Sequential(
        [
            keras.layers.Input(input_shape),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(128, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
''',
    "src/train.py": '''\
"""Train the CNN and log the run (parameters, metrics, model) to MLflow."""

import argparse

import mlflow

from src.model import build

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    with mlflow.start_run():
        mlflow.log_param("epochs", args.epochs)
        model = build()
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
''',
    "src/evaluate.py": '''\
"""Evaluate the last run's model on the validation images and register it when better."""

import mlflow

if __name__ == "__main__":
    client = mlflow.MlflowClient()
    print(client.search_registered_models(max_results=1))
''',
    "src/inference.py": '''\
"""Predict on a split of the images with the registered model; print the accuracy as JSON."""

import argparse
import json

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", default="test")
    print(json.dumps({"split": parser.parse_args().split, "accuracy": None}))
''',
    f"{DAG_FOLDER}/airflow_docker_DAG.py": DOCKER_DAG,
    f"{DAG_FOLDER}/airflow_k8s_workflow_DAG.py": K8S_WORKFLOW_DAG,
    f"{DAG_FOLDER}/airflow_k8s_test_inference_DAG.py": K8S_TEST_INFERENCE_DAG,
    f"{DAG_FOLDER}/pod_template.yaml": POD_TEMPLATE,
}
DAG_FILES = tuple(name for name in DAG_IDS)


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise AssertionError(f"git {' '.join(args)} failed in {cwd}:\n{result.stderr}")
    return result.stdout.strip()


def write(folder: Path) -> str:
    """The team's repository in `folder` (a new git repository), all files in one commit
    by a teammate; the commit."""
    folder.mkdir(parents=True)
    git(folder, "init", "--quiet", "--initial-branch", BRANCH)
    git(folder, "config", "user.name", "Teammate")
    git(folder, "config", "user.email", "teammate@example.com")
    for name, text in FILES.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    git(folder, "add", ".")
    git(folder, "commit", "--quiet", "-m", "CNN skin cancer: training and inference DAGs (Airflow 2)")
    return git(folder, "rev-parse", "HEAD")


def bare_remote(root: Path) -> Path:
    """root/cnn-skin-cancer.git: a bare repository holding the team's history, as a git
    server does (serve root with tests/support/git_http_server.GitHttpServer)."""
    work = root.parent / f"{root.name}-team-work"
    write(work)
    bare = root / REMOTE_NAME
    root.mkdir(parents=True, exist_ok=True)
    git(root, "clone", "--quiet", "--bare", str(work), str(bare))
    return bare
