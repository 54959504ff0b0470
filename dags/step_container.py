"""One step of src/skin_cancer/tasks.py in a container of images/pipeline, started by the
Docker provider's DockerOperator on the pipeline's container engine (DOCKER_HOST: the
pipeline account's rootless podman; mlops_ide/supervisor/pipeline_engine.py). Not a DAG file:
pipeline_steps.py imports it when MLOPS_IDE_PIPELINE_RUNNER=docker.

What DockerOperator leaves to us:
- the step's result: `python -m skin_cancer.tasks` prints it as JSON on a line of its own
  after RESULT_PREFIX (stderr is mixed in: a library's warning may come after it); it
  becomes the task's XCom as a value (never `retrieve_output`, which unpickles);
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
RESULT_PREFIX = "mlops-ide step result: "  # as src/skin_cancer/tasks.py prints it
TAIL = 40  # the step's last lines a failure repeats


class StepContainer(DockerOperator):
    """`python -m skin_cancer.tasks <step> '<JSON>'` in a container; its XCom: the result."""

    def execute(self, context: Any) -> Any:
        # a preview's task has its own token in `environment` (the previews' policy): it wins
        self._private_environment = {
            name: os.environ[name] for name in PRIVATE if name in os.environ and name not in self.environment
        }
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
        self.xcom_all = True  # every line: the result's need not be the last
        try:
            lines = super().execute(context) or []
        except DockerContainerFailedException as failed:
            raise AirflowException(
                f"step {self.command[0]!r} failed in its container ({failed}); its last lines:\n"
                + ("\n".join((failed.logs or [])[-TAIL:]) or "(it printed nothing)")
            ) from None
        return step_result(self.command[0], lines if isinstance(lines, list) else [lines])


def step_result(step: str, lines: list[str]) -> Any:
    """The value of the last result line of a step's output."""
    for line in reversed(lines):
        if line.startswith(RESULT_PREFIX):
            try:
                return json.loads(line.removeprefix(RESULT_PREFIX))
            except ValueError:
                break
    raise AirflowException(
        f"step {step!r} ended without its result (a line '{RESULT_PREFIX}<JSON>'); its last lines:\n"
        + ("\n".join(lines[-TAIL:]) or "(it printed nothing)")
    )
