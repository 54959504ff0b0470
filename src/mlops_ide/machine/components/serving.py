"""The model-serving API (FastAPI, `python -m skin_cancer.serving`) in the pipeline's
virtualenv, as the pipeline's account when the platform runs as root: it serves MLflow's
`champion` and follows the alias without a restart."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

from mlops_ide import names
from mlops_ide.machine.components import mlflow
from mlops_ide.machine.components.base import (
    Component,
    Inputs,
    Port,
    Waiting,
    account_environ,
    port_setting,
    process,
)
from mlops_ide.machine.os_accounts import as_account
from mlops_ide.machine.state.layout import code_lib, ensure_folder
from mlops_ide.settings import Settings

if TYPE_CHECKING:  # the hub reads these declarations; only `make up` runs processes
    from mlops_ide.supervisor.runner import Process

PORT = port_setting("MLOPS_IDE_SERVING_PORT", "serving_port", "the model-serving API", 8500)
WORKFLOW_DAG = "cnn_skin_cancer_workflow"  # trains the models and names the champion (dags/)
NO_CHAMPION = Waiting(
    status=503,
    detail="no champion model loaded",  # what skin_cancer/serving.py's GET /health answers then
    says=f"no champion model yet: run {WORKFLOW_DAG}",
    step_component="airflow",
    step_path=f"dags/{WORKFLOW_DAG}",  # its page in Airflow's UI, with the Trigger button
    step_text=(
        f"open {WORKFLOW_DAG} in Airflow and press Trigger (then Trigger in its dialog): "
        "it trains the models and serves the best"
    ),
)


def url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.serving_port}"


def seed_dataset(inputs: Inputs) -> list[str]:
    """A small synthetic skin-lesion dataset for the demo, once, written as the pipeline's
    account (the folder is its); a real one put there is kept."""
    settings = inputs.settings
    if (settings.dataset / "train").exists():
        how = "kept"
    else:
        account = inputs.account(names.PIPELINE_ACCOUNT)
        subprocess.run(
            [
                str(inputs.tools.pipeline_python),
                "-m",
                "skin_cancer.synthetic",
                "--out",
                str(settings.dataset),
            ],
            env={**account_environ(account), "PYTHONPATH": str(code_lib(settings))},
            cwd=ensure_folder(settings.dataset.parent, 0o755),
            check=True,
            capture_output=True,
            umask=0o022,  # readable by the data scientists (READ_BY_USERS), not under 077
            **as_account(account),
        )
        how = "seeded with synthetic images"
    return [f"skin-lesion dataset {settings.dataset} ({how})"]


def processes(inputs: Inputs) -> list[Process]:
    settings, python = inputs.settings, inputs.tools.pipeline_python
    env = {
        "PYTHONPATH": str(code_lib(settings)),
        **mlflow.pipeline_env(inputs),  # reads the champion as the pipeline
        "PATH": f"{python.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
    }
    argv = [str(python), "-m", "skin_cancer.serving", "--port", str(settings.serving_port)]
    # Ready once it answers at all: /health says 503 until a champion exists.
    ready = f"{url(settings)}/openapi.json"
    drop = ("PYTHONPATH", "KERAS_BACKEND")
    # after MLflow: it loads the champion as it starts (else not before its next check, 30 s on)
    after = mlflow.ready_for_clients(settings)
    account = names.PIPELINE_ACCOUNT
    return [process(inputs, "Serving", argv, ready, env=env, drop=drop, account=account, after=after)]


COMPONENT = Component(
    name="serving",
    title="Serving",
    order=20,
    settings=(PORT,),
    processes=processes,
    ports=lambda settings: [Port("127.0.0.1", settings.serving_port, PORT.name, "the model-serving API")],
    url=url,
    link="/docs",
    health="/health",
    waiting=NO_CHAMPION,
    banner="(the champion model's API)",
    prepare=seed_dataset,
)
