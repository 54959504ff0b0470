"""MLOPS_IDE_PIPELINE_RUNNER=docker on the real platform (`make test-images`): the
pipeline's rootless engine, its boundary, and the workflow DAG with each step in a
container of the pipeline image built by `make images`.

Trust-table row "a DAG / pipeline task": whoever reaches the engine's API (a pushed DAG
does, as the pipeline's account) gets the pipeline's account and nothing more, however the
container is asked for; nobody else reaches it."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from mlops_ide import names
from mlops_ide.machine.state.tools import Tools
from mlops_ide.supervisor import images, pipeline_engine
from tests.platform.test_skin_cancer_workflow import assert_three_models_and_the_best_is_champion, mlflow_gate
from tests.support.airflow_api import AirflowAPI
from tests.support.local_platform import ROOT, PlatformConfig, RunningPlatform, wait_for

pytestmark = pytest.mark.images


def engine_left_nothing(running: RunningPlatform) -> None:
    assert engine_processes(running.home) == [], "the engine left processes behind"


PLATFORM = PlatformConfig(
    "docker-runner",
    {
        "MLOPS_IDE_SERVICES": "airflow,mlflow,serving",
        "MLOPS_IDE_PIPELINE_RUNNER": "docker",
    },
    timeout=600,  # the first start after a build copies the image into the engine
    before_start=lambda: images.build(["pipeline"]),  # seconds when nothing changed
    after_stop=engine_left_nothing,
)


def engine_processes(home: Path) -> list[int]:
    """The pipeline account's processes of this platform's engine (its runtime folder;
    podman's own, its "pause" process included, have it in their environment)."""
    marker = f"XDG_RUNTIME_DIR={home / 'pipeline-engine'}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(int(pid))
        except OSError:
            continue
    return found


def pipeline_account() -> pwd.struct_passwd:
    return pwd.getpwnam(names.PIPELINE_ACCOUNT)


def as_pipeline(platform: RunningPlatform, argv: list[str], **env: str) -> subprocess.CompletedProcess:
    """`argv` as the pipeline's account, with what Airflow's worker has to reach the engine."""
    account = pipeline_account()
    return subprocess.run(
        ["setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}", "--clear-groups", *argv],
        capture_output=True,
        text=True,
        timeout=600,
        cwd="/",
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(platform.home / "pipeline-home"),
            "DOCKER_HOST": f"unix://{platform.home / 'pipeline-engine' / 'podman.sock'}",
            **env,
        },
    )


def in_container(platform: RunningPlatform, script: str, mounts: dict[str, str], **asked: object) -> dict:
    """A container of the pipeline image started through the engine's Docker API (the
    docker SDK of Airflow's virtualenv, as DockerOperator does), as the pipeline's account."""
    client = f"""
import json, os, docker
from docker.types import Mount
api = docker.APIClient(base_url=os.environ["DOCKER_HOST"])
container = api.create_container(
    image={images.tag_of("pipeline")!r}, entrypoint=["sh", "-c"], command=[{script!r}],
    user={asked.get("user")!r},
    host_config=api.create_host_config(
        privileged={asked.get("privileged", False)!r}, cap_add={asked.get("cap_add")!r}, network_mode="host",
        mounts=[Mount(target=inside, source=host, type="bind") for host, inside in {mounts!r}.items()]))
api.start(container)
status = api.wait(container)["StatusCode"]
print(json.dumps({{"status": status, "output": api.logs(container).decode()}}))
api.remove_container(container, force=True)
"""
    shown = as_pipeline(platform, [str(Tools.load().airflow_python), "-c", client])
    assert shown.returncode == 0, shown.stderr[-3000:]
    return json.loads(shown.stdout.splitlines()[-1])


def test_the_engine_runs_as_the_pipeline_account_on_a_socket_of_its_own(platform: RunningPlatform) -> None:
    engine = platform.service_pid(b"system\0service")
    account = pipeline_account()
    folder = platform.home / "pipeline-engine"

    assert os.stat(f"/proc/{engine}").st_uid == account.pw_uid
    assert (folder.stat().st_uid, folder.stat().st_mode & 0o777) == (account.pw_uid, 0o700)
    nobody = subprocess.run(  # a user's account, or any other: not even the socket's name
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "python3", "-c", CONNECT],
        capture_output=True,
        text=True,
        timeout=30,
        env={"SOCKET": str(folder / "podman.sock")},
    )
    assert nobody.stdout.strip() == "PermissionError", nobody.stderr


CONNECT = """
import os, socket
try:
    socket.socket(socket.AF_UNIX).connect(os.environ["SOCKET"]); print("connected")
except OSError as error:
    print(type(error).__name__)
"""


def test_a_container_asked_for_root_and_the_host_gets_the_pipeline_account_only(
    platform: RunningPlatform, tmp_path: Path
) -> None:
    """What a pushed DAG could ask the engine for: privileged, the host's / mounted. Root's
    files stay closed (the hub's cookie secret), /etc unwritable; what it writes where the
    pipeline may is the pipeline's."""
    secret = platform.home / "jupyterhub_cookie_secret"
    runs = platform.home / "pipeline-runs"
    assert secret.exists()
    script = (
        # 2>&1: one stream, in order (the engine reads stdout and stderr apart)
        f"id -u; cat /host{secret} 2>&1 || echo SECRET-CLOSED; "
        "touch /host/etc/mlops-ide-escape 2>&1 || echo ETC-CLOSED; "
        f"touch /host{runs}/written-by-a-container"
    )

    shown = in_container(platform, script, {"/": "/host"}, privileged=True, user="0", cap_add=["ALL"])

    lines = shown["output"].splitlines()
    assert lines[0] == "0"  # root of the container's user namespace: not the host's
    assert lines[1:5] == [
        f"cat: /host{secret}: Permission denied",
        "SECRET-CLOSED",
        "touch: cannot touch '/host/etc/mlops-ide-escape': Permission denied",
        "ETC-CLOSED",
    ]
    assert secret.read_text().strip() not in shown["output"]
    assert not Path("/etc/mlops-ide-escape").exists()
    # the container's root is the pipeline's account on the host (keep-id maps it to 10001,
    # and 0 to a subordinate ID: what root of the container makes there is nobody's)
    made = (runs / "written-by-a-container").stat().st_uid
    assert made != 0 and made not in {user.pw_uid for user in pwd.getpwall()} - {pipeline_account().pw_uid}


@pytest.fixture(scope="module")
def workflow_run(platform: RunningPlatform) -> dict:
    api = AirflowAPI(platform.airflow_url, platform.airflow_password)
    wait_for(lambda: api.dag("cnn_skin_cancer_workflow"), 120, "the use-case DAGs to be parsed")
    return api.wait_for_run("cnn_skin_cancer_workflow", api.trigger("cnn_skin_cancer_workflow"), timeout=900)


def test_the_workflow_in_containers_registers_three_models_and_a_champion(
    platform: RunningPlatform, workflow_run: dict
) -> None:
    assert workflow_run["state"] == "success"
    assert_three_models_and_the_best_is_champion(platform)


def test_the_test_inference_dag_passes_in_a_container_too(
    platform: RunningPlatform, workflow_run: dict
) -> None:
    """The second skin-cancer DAG: its check of serving's champion, in a container."""
    api = AirflowAPI(platform.airflow_url, platform.airflow_password)

    run = api.wait_for_run(
        "cnn_skin_cancer_test_inference", api.trigger("cnn_skin_cancer_test_inference"), timeout=300
    )

    assert run["state"] == "success"


def test_the_workflows_steps_ran_in_containers_that_are_gone(
    platform: RunningPlatform, workflow_run: dict
) -> None:
    def pipeline_engine_says(*args: str) -> list[str]:
        shown = as_pipeline(
            platform,
            pipeline_engine.podman_argv(*args),
            CONTAINERS_CONF=str(pipeline_engine.CONF),
            XDG_RUNTIME_DIR=str(platform.home / "pipeline-engine"),
        )
        assert shown.returncode == 0, shown.stderr
        return shown.stdout.split()

    def events(kind: str) -> list[str]:  # since the run began: the engine's events are the machine's
        since = workflow_run["start_date"]
        return pipeline_engine_says(
            "events",
            "--stream=false",
            "--since",
            since,
            "--filter",
            f"event={kind}",
            "--format",
            "{{.Image}}",
        )

    image = images.tag_of("pipeline")
    created, removed = events("create"), events("remove")

    assert created.count(image) >= 7  # preprocess, three trainings, compare, reload serving; the check
    assert removed.count(image) == created.count(image)  # each removed once its step ended
    assert image not in pipeline_engine_says("ps", "--all", "--format", "{{.Image}}")


def step_in_engine(platform: RunningPlatform, step: str, arguments: dict, **env: str) -> dict:
    """One step through the Docker runner's operator, as Airflow's worker (the pipeline's account)."""
    shown = as_pipeline(
        platform,
        [
            str(Tools.load().airflow_python),
            str(ROOT / "tests" / "support" / "run_step_container.py"),
            step,
            json.dumps(arguments),
        ],
        PYTHONPATH=str(ROOT / "src"),
        MLOPS_IDE_DATA_ROOT=str(platform.home / "data" / "skin-lesions"),
        MLOPS_IDE_WORK_ROOT=str(platform.home / "pipeline-runs"),
        # as the platform gives Airflow (machine/components/airflow.py): its MLflow, the pipeline's token
        MLFLOW_TRACKING_URI=mlflow_gate(platform)[0],
        MLFLOW_TRACKING_TOKEN=mlflow_gate(platform)[1],
        **{"MLOPS_IDE_PIPELINE_IMAGE": images.tag_of("pipeline"), **env},
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    return json.loads(shown.stdout.splitlines()[-1])


def test_a_step_that_fails_in_its_container_fails_with_the_containers_log(platform: RunningPlatform) -> None:
    missing = platform.home / "data" / "no-such-dataset"
    answer = step_in_engine(
        platform,
        "preprocess",
        {"data_root": str(missing), "work_root": str(platform.home / "pipeline-runs"), "run_id": "broken"},
    )

    assert answer["error"].startswith("step 'preprocess' failed in its container")
    assert str(missing) in answer["error"].splitlines()[-1]  # the step's own last words


def test_an_image_missing_from_the_engine_is_named_with_the_command_that_builds_it(
    platform: RunningPlatform,
) -> None:
    answer = step_in_engine(
        platform,
        "compare",
        {"results": []},
        MLOPS_IDE_PIPELINE_IMAGE="localhost/mlops-ide-pipeline:never-built",
    )

    assert answer["error"] == (
        "localhost/mlops-ide-pipeline:never-built is not in the pipeline's container engine: build it with "
        "`make images IMAGES=pipeline` and restart the platform (it copies the image in at start)."
    )


def test_a_users_terminal_does_not_reach_the_engine(platform: RunningPlatform) -> None:
    """A data scientist's server gets no DOCKER_HOST, and their own account cannot open the
    socket: `mlops-ide dag test` runs steps in the pipeline's virtualenv, the engine is
    Airflow's alone."""
    platform.add_user("alice")
    platform.open_vscode(platform.login("alice"), "alice")
    socket_path = platform.home / "pipeline-engine" / "podman.sock"

    shown = platform.terminal("alice", "python3", "-c", CONNECT, cwd=Path("/"), SOCKET=str(socket_path))

    assert "DOCKER_HOST" not in platform.server_environ("alice")
    assert shown.stdout.strip() == "PermissionError", shown.stderr
