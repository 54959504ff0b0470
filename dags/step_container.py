"""One step of src/skin_cancer/tasks.py in a container of images/pipeline, started by the
Docker provider's DockerOperator on the pipeline's container engine (DOCKER_HOST: the
pipeline account's rootless podman; mlops_ide/pipeline_engine.py). Not a DAG file:
pipeline_steps.py imports it when MLOPS_IDE_PIPELINE_RUNNER=docker.

What DockerOperator leaves to us:
- the step's result: `python -m skin_cancer.tasks` prints it as JSON on its last line;
  it becomes the task's XCom as a value (never `retrieve_output`, which unpickles);
- MLflow's token: read from the worker's environment when the step runs, passed as a
  private variable (not a template field: never in the DAG, its rendering or the database);
- errors a person can act on: no engine, no image, a step that failed (its last lines).
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.providers.docker.exceptions import DockerContainerFailedException
from airflow.providers.docker.operators.docker import DockerOperator
from airflow.sdk.exceptions import AirflowException

PRIVATE = ("MLFLOW_TRACKING_TOKEN",)  # from the worker's environment, at run time only
TAIL = 40  # the step's last lines a failure repeats


class StepContainer(DockerOperator):
    """`python -m skin_cancer.tasks <step> '<JSON>'` in a container; its XCom: the result."""

    def execute(self, context: Any) -> Any:
        self._private_environment = {name: os.environ[name] for name in PRIVATE if name in os.environ}
        try:
            found = self.cli.images(name=self.image)
        except Exception as error:  # DockerException, AirflowException: the client's own
            raise AirflowException(
                f"no container engine answers at {self.docker_url} ({error}). The Docker runner needs "
                "the platform's pipeline engine: `make images`, then `make up` with "
                "MLOPS_IDE_PIPELINE_RUNNER=docker starts it."
            ) from None
        if not found:
            raise AirflowException(
                f"{self.image} is not in the pipeline's container engine: build it with "
                "`make images IMAGES=pipeline` and restart the platform (it copies the image in at start)."
            )
        try:
            last = super().execute(context)
        except DockerContainerFailedException as failed:
            lines = failed.logs or []
            raise AirflowException(
                f"step {self.command[0]!r} failed in its container ({failed}); its last lines:\n"
                + ("\n".join(lines[-TAIL:]) or "(it printed nothing)")
            ) from None
        try:
            return json.loads(last)
        except (TypeError, ValueError):
            raise AirflowException(
                f"step {self.command[0]!r} ended without its result (a JSON last line); it printed: {last!r}"
            ) from None
