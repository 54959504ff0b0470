"""The Docker runner's settings and errors, without a container engine (these run in
`make test`; the engine itself, its boundary and the workflow in containers are in
tests/platform/test_docker_runner.py, `make test-images`)."""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_ide import names
from mlops_ide.hub import modes
from mlops_ide.machine.components import airflow
from mlops_ide.machine.components.base import Inputs
from mlops_ide.machine.state.tools import Tools
from mlops_ide.settings import SettingsError
from mlops_ide.supervisor import pipeline_engine
from tests.support.local_platform import ROOT, free_port_base, platform_env


def run_step(step: str, arguments: dict, **env: str) -> dict:
    """One step through the Docker runner's operator (tests/support/run_step_container.py)."""
    shown = subprocess.run(
        [
            str(Tools.load().airflow_python),
            str(ROOT / "tests" / "support" / "run_step_container.py"),
            step,
            json.dumps(arguments),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    return json.loads(shown.stdout.splitlines()[-1])


def test_a_step_without_an_engine_fails_saying_how_to_start_one(tmp_path: Path) -> None:
    answer = run_step("preprocess", {"data_root": "/data"}, DOCKER_HOST=f"unix://{tmp_path}/podman.sock")

    assert answer["error"].startswith(f"no container engine answers at unix://{tmp_path}/podman.sock")
    assert "`make images`, then `make up` with MLOPS_IDE_PIPELINE_RUNNER=docker" in answer["error"]


PRIVATE_TOKEN_PROBE = """
import json, sys
sys.path.append(sys.argv[1])
from step_container import StepContainer

for environment in ({}, {"MLFLOW_TRACKING_TOKEN": "preview-token"}):
    step = StepContainer(
        task_id="s", image="pipeline", command=["preprocess", "{}"], environment=dict(environment),
        docker_url=sys.argv[2],
    )
    try:
        step.execute({})
    except Exception:  # no engine here: the token it would pass is decided before
        pass
    print(json.dumps(step._private_environment))
"""


def test_a_container_step_passes_the_workers_token_unless_its_task_has_one(tmp_path: Path) -> None:
    """The token goes privately (never a template field) from the worker's environment, the
    pipeline's; a preview's task has the preview identity's in `environment` (the previews'
    policy), which must win, or a preview's container would use MLflow as the pipeline."""
    shown = subprocess.run(
        [
            str(Tools.load().airflow_python),
            "-c",
            PRIVATE_TOKEN_PROBE,
            str(ROOT / "dags"),
            f"unix://{tmp_path}/podman.sock",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MLFLOW_TRACKING_TOKEN": "pipeline-token"},
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    main, preview = (json.loads(line) for line in shown.stdout.splitlines() if line.startswith("{"))
    assert main == {"MLFLOW_TRACKING_TOKEN": "pipeline-token"}
    assert preview == {}  # its environment's token goes to the container


def test_the_docker_runner_without_podman_stops_the_start_saying_what_to_install(tmp_path: Path) -> None:
    empty = tmp_path / "bin"  # git alone (settings read the checkout's branch)
    empty.mkdir()
    (empty / "git").symlink_to(shutil.which("git"))
    env = platform_env(tmp_path / "state", free_port_base(), MLOPS_IDE_SERVICES="airflow,mlflow")
    env.update(MLOPS_IDE_PIPELINE_RUNNER="docker", PATH=str(empty))

    shown = subprocess.run(
        [sys.executable, "-m", "mlops_ide.supervisor.up"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )

    assert shown.returncode == 2, shown.stdout
    assert (
        "MLOPS_IDE_PIPELINE_RUNNER=docker runs each step in a container, and Debian's podman" in shown.stdout
    )
    assert "run `make images`" in shown.stdout and "or set MLOPS_IDE_PIPELINE_RUNNER=local" in shown.stdout
    assert not (tmp_path / "state" / "pipeline-engine").exists()  # stopped before making anything


def stand_in_tools(folder: Path, *names: str) -> str:
    """A PATH of `names` (stand-ins: problems() asks for their presence) and git (settings
    read the checkout's branch)."""
    folder.mkdir()
    (folder / "git").symlink_to(shutil.which("git"))
    for name in names:
        (folder / name).write_text("#!/bin/sh\nexit 1\n")
        (folder / name).chmod(0o755)
    return str(folder)


def test_an_engine_without_uidmap_is_named_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """podman and runc installed earlier (`make images` of an older version), uidmap not."""
    monkeypatch.setenv("PATH", stand_in_tools(tmp_path / "bin", "podman", "runc"))
    settings = modes.load({"MLOPS_IDE_PIPELINE_RUNNER": "docker", "MLOPS_IDE_HOME": str(tmp_path / "state")})

    assert pipeline_engine.problems(settings) == [
        "MLOPS_IDE_PIPELINE_RUNNER=docker runs each step in a container, and Debian's uidmap is not "
        f"installed: {pipeline_engine.INSTALL}; or set MLOPS_IDE_PIPELINE_RUNNER=local."
    ]


def test_a_state_folder_too_deep_for_the_engines_socket_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", stand_in_tools(tmp_path / "bin", "podman", "runc", "newuidmap", "newgidmap"))
    deep = tmp_path / ("d" * 100) / "state"
    settings = modes.load({"MLOPS_IDE_PIPELINE_RUNNER": "docker", "MLOPS_IDE_HOME": str(deep)})

    (problem,) = pipeline_engine.problems(settings)
    assert problem.startswith(f"MLOPS_IDE_PIPELINE_RUNNER=docker puts its engine's socket at {deep}")
    assert problem.endswith("set MLOPS_IDE_HOME to a shorter folder.")


@pytest.mark.parametrize("runner", ["kubernetes", "podman"])
def test_a_runner_this_machine_has_not_is_refused(runner: str) -> None:
    with pytest.raises(SettingsError) as refused:
        modes.load({"MLOPS_IDE_PIPELINE_RUNNER": runner})

    assert (
        f"MLOPS_IDE_PIPELINE_RUNNER='{runner}' is not a runner of this machine: set 'local' or 'docker'"
        in str(refused.value)
    )


def test_the_docker_runner_is_a_setting_of_the_platform() -> None:
    settings = modes.load({"MLOPS_IDE_PIPELINE_RUNNER": "Docker"})

    assert pipeline_engine.chosen(settings)
    assert (
        pipeline_engine.image(settings) == "localhost/mlops-ide-pipeline:local"
    )  # what `make images` builds
    assert not pipeline_engine.chosen(modes.load({}))


def test_subordinate_ids_are_found_or_taken_after_every_range_given_out() -> None:
    given = [
        [("alice", 100000, 65536), ("mlops-ide-pipeline", 300000, 65536), ("bob", 165536, 65536)],
        [("alice", 100000, 65536), ("980", 300000, 65536)],  # by uid in /etc/subgid
    ]

    assert pipeline_engine.owned_range(given, ("mlops-ide-pipeline", "980")) == (300000, 65536)
    assert pipeline_engine.owned_range(given, ("bob", "981")) is None  # in one file only
    assert pipeline_engine.free_range(given) == 365536
    assert pipeline_engine.free_range([[], []]) == 100000
    assert pipeline_engine.free_range(given, taken=[1000, 400000]) == 400001  # a directory's user
    assert (
        pipeline_engine.owned_range([[("carol", 100000, 1000)], [("carol", 100000, 1000)]], ("carol",))
        is None
    )


def test_the_step_and_its_container_operator_agree_on_the_result_line() -> None:
    """The pipeline image's step prints its result after a prefix that the Docker runner
    looks for (Airflow's process does not import the pipeline's code), as do the tests
    that run a step by hand."""
    pattern = re.compile(r'^RESULT_PREFIX = "([^"]+)"', re.MULTILINE)
    said = {path: pattern.findall((ROOT / path).read_text()) for path in (TASKS, STEP_CONTAINER, TEST_TOOLS)}

    assert said[TASKS] == said[STEP_CONTAINER] == said[TEST_TOOLS] == ["mlops-ide step result: "]


TASKS, STEP_CONTAINER, TEST_TOOLS = (
    "src/skin_cancer/tasks.py",
    "dags/step_container.py",
    "tests/support/platform_tools.py",
)
FIND_RESULT = """
import json, sys
sys.path.append("dags")
from step_container import step_result
try:
    print(json.dumps({"result": step_result("train", json.loads(sys.argv[1]))}))
except Exception as error:
    print(json.dumps({"error": str(error)}))
"""


@pytest.mark.parametrize(
    "lines, expected",
    [
        # a library's warning on stderr after the result (stdout and stderr come mixed)
        (
            ["Epoch 1/2", 'mlops-ide step result: {"version": "3"}', "resource_tracker: leaked"],
            {"version": "3"},
        ),
        # a bare JSON value printed last is not the result
        (['mlops-ide step result: "/work/arrays"', "0"], "/work/arrays"),
        (["Epoch 1/2", "0"], "step 'train' ended without its result"),
        (["mlops-ide step result: {broken"], "step 'train' ended without its result"),
    ],
)
def test_a_steps_result_is_its_last_result_line(lines: list[str], expected: object) -> None:
    shown = subprocess.run(
        [str(Tools.load().airflow_python), "-c", FIND_RESULT, json.dumps(lines)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    answer = json.loads(shown.stdout.splitlines()[-1])

    if isinstance(expected, str) and expected.startswith("step "):
        assert answer["error"].startswith(expected) and lines[-1] in answer["error"]
    else:
        assert answer == {"result": expected}


def test_with_the_docker_runner_airflow_starts_the_engine_first_as_the_pipeline_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's process, built from the settings: podman's API as the pipeline's
    account on the platform's store, with an environment of its own (root's secrets stay
    out: a DAG can read the engine's); Airflow gets DOCKER_HOST, user servers do not."""
    monkeypatch.setenv("ROOTS_OWN_SECRET", "not-for-the-pipeline")
    account = pwd.struct_passwd(
        ("mlops-ide-pipeline", "x", 12345, 12345, "", str(tmp_path / "ph"), "/bin/false")
    )
    settings = modes.load({"MLOPS_IDE_HOME": str(tmp_path), "MLOPS_IDE_PIPELINE_RUNNER": "docker"})
    git = pwd.struct_passwd(("mlops-ide-git", "x", 12346, 12346, "", "/nonexistent", "/bin/false"))
    platform = Inputs(
        settings, Tools.load(), "a-password", {names.PIPELINE_ACCOUNT: account, names.GIT_ACCOUNT: git}
    )
    socket_path = tmp_path / "pipeline-engine" / "podman.sock"

    engine, *others = airflow.processes(platform)

    assert engine.name == "pipeline container engine" and engine.account == account
    assert engine.argv[1:] == [
        "--root", "/var/lib/mlops-ide/pipeline-containers/storage",
        "--runroot", "/run/mlops-ide/pipeline-containers/run",
        "--tmpdir", "/run/mlops-ide/pipeline-containers/tmp",
        "--storage-driver", "overlay",
        "system", "service", "--time", "0", f"unix://{socket_path}",
    ]  # fmt: skip
    assert set(engine.env) == {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "XDG_RUNTIME_DIR",
        "CONTAINERS_CONF",
    }
    assert engine.env["XDG_RUNTIME_DIR"] == str(socket_path.parent)
    assert engine.ready_url.startswith("http+unix://") and engine.ready_url.endswith("/_ping")
    scheduler = next(process for process in others if process.name == "Airflow scheduler")
    assert scheduler.env["DOCKER_HOST"] == f"unix://{socket_path}"
    assert scheduler.env["MLOPS_IDE_PIPELINE_RUNNER"] == "docker"
    assert scheduler.env["MLOPS_IDE_PIPELINE_IMAGE"] == "localhost/mlops-ide-pipeline:local"
    users_dag_settings = airflow.dag_settings(platform)  # what user servers get (up.py)
    assert "DOCKER_HOST" not in users_dag_settings
    assert users_dag_settings["MLOPS_IDE_PIPELINE_RUNNER"] == "local"
