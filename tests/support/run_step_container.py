"""Run in Airflow's virtualenv by the Docker runner's tests: one step of the DAGs'
Docker runner (dags/pipeline_steps.container_step) started by its operator outside a DAG
run, as Airflow's worker would: DOCKER_HOST, MLOPS_IDE_PIPELINE_IMAGE, the data and work
folders and MLflow's settings from this environment.

    python tests/support/run_step_container.py STEP '<JSON arguments>'

Prints one JSON line: {"result": <the step's XCom>} or {"error": "<the task's error>"}."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2] / "dags"))
os.environ["MLOPS_IDE_PIPELINE_RUNNER"] = "docker"

import jinja2
import pipeline_steps

step, arguments = sys.argv[1], json.loads(sys.argv[2])
operator = pipeline_steps.container_step("step", step, arguments)
templates = jinja2.Environment(undefined=jinja2.StrictUndefined)
templates.filters["tojson"] = json.dumps
operator.command = [step, templates.from_string(operator.command[-1]).render()]
try:
    print(json.dumps({"result": operator.execute({})}))
except Exception as error:  # what the task would fail with
    print(json.dumps({"error": str(error)}))
