"""Our images, built for real by the local engine (`make test-images`, not `make test`):
the stand-in base is shaped like the official Python image, and each image on it runs
what it is for. Builds are cached between runs; the first run downloads PyTorch's layer."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlops_ide.machine.components import mlflow as mlflow_service
from mlops_ide.machine.state.tools import TOOLS_FILE_KEYS
from mlops_ide.supervisor import images
from tests.support.kubernetes_hub_tools import kubernetes_env
from tests.support.platform_tools import step_result

pytestmark = pytest.mark.images

OFFICIAL_PYTHON = images.official_name(images.python_bases()[0])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def built() -> Callable[[str], str]:
    """Builds what the tests need once per run (seconds when nothing changed)."""
    done: set[str] = set()

    def build(name: str) -> str:
        if name not in done:
            images.build([name])
            done.add(name)
        return images.tag_of(name)

    return build


def container_options(
    env: dict[str, str] | None, mounts: dict[Path, str] | None, entrypoint: str | None
) -> list[str]:
    options = []
    for name, value in (env or {}).items():
        options += ["-e", f"{name}={value}"]
    for host, inside in (mounts or {}).items():
        options += ["-v", f"{host}:{inside}"]
    if entrypoint is not None:
        options += ["--entrypoint", entrypoint]
    return options


def run(
    image: str,
    *args: str,
    env: dict[str, str] | None = None,
    mounts: dict[Path, str] | None = None,
    entrypoint: str | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """`podman run --rm` in our engine, to the end; output captured."""
    command = ["run", "--rm", *container_options(env, mounts, entrypoint)]
    return subprocess.run(
        [images.find_tool("podman"), *command, image, *args],
        env=images.engine_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Detached:
    """A container left running (`podman run -d`), removed at the end."""

    def __init__(
        self,
        image: str,
        *args: str,
        env: dict[str, str] | None = None,
        mounts: dict[Path, str] | None = None,
        entrypoint: str | None = None,
    ):
        self.name = f"mlops-ide-test-{uuid.uuid4().hex[:8]}"
        options = container_options(env, mounts, entrypoint)
        images.podman("run", "-d", "--name", self.name, *options, image, *args, capture=True)

    def logs(self) -> str:
        shown = images.podman("logs", self.name, capture=True, check=False)
        return (shown.stdout + shown.stderr)[-3000:]

    def wait_for(self, url: str, timeout: float = 120) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return response.read()
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{url} never answered:\n{self.logs()}") from None
                time.sleep(0.5)

    def remove(self) -> None:
        images.podman("rm", "-f", "-t", "5", self.name, capture=True, check=False)


def shared_folder(tmp_path: Path, name: str) -> Path:
    """A folder the images' users (uid 10001) may write to."""
    folder = tmp_path / name
    folder.mkdir()
    folder.chmod(0o777)
    return folder


# -- the stand-in base ----------------------------------------------------------------------------


def test_stand_in_base_has_python_and_pip_where_the_official_image_has_them(built) -> None:
    images.build_stand_in_base()
    shown = run(
        OFFICIAL_PYTHON,
        "sh",
        "-c",
        "command -v python; command -v pip; python -c 'import sys; print(sys.version_info[:2])'; "
        "pip --version; python -m venv /tmp/v && /tmp/v/bin/python -c 'print(\"venv\")'",
    )

    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[:3] == ["/usr/local/bin/python", "/usr/local/bin/pip", "(3, 11)"]
    assert "python 3.11" in lines[3]
    assert lines[4] == "venv"


def test_stand_in_base_is_made_once_per_recipe(built, capsys: pytest.CaptureFixture[str]) -> None:
    images.build_stand_in_base()
    capsys.readouterr()
    started = time.monotonic()

    images.build_stand_in_base()

    assert "up to date" in capsys.readouterr().out
    assert time.monotonic() - started < 10


# -- the hub ------------------------------------------------------------------------------------------

CONFIG_SUMMARY = """
import json, pathlib, sys
from traitlets.config import PyFileConfigLoader
if len(sys.argv) > 1:
    # the state folder as `make up` leaves it for the hub (tests/unit/test_hub_config.py)
    pathlib.Path(sys.argv[1], "airflow-auth").mkdir(parents=True)
    pathlib.Path(sys.argv[1], "password").write_text("prepared-password\\n")
    pathlib.Path(sys.argv[1], "airflow-auth", "mlflow_token").write_text("pipeline-token\\n")
    pathlib.Path(sys.argv[1], "airflow-auth", "mlflow_preview_token").write_text("preview-token\\n")
c = PyFileConfigLoader("jupyterhub_config.py", path="/srv/mlops-ide").load_config()
hub = c.JupyterHub
print(json.dumps({"spawner": str(hub.spawner_class), "authenticator": str(hub.authenticator_class)}))
"""


def test_hub_image_loads_its_config_in_kubernetes_mode(built) -> None:
    env = kubernetes_env(Path("/srv/jupyterhub"))

    shown = run(built("hub"), "python", "-c", CONFIG_SUMMARY, env=env)

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout.splitlines()[-1]) == {
        "spawner": "mlops_ide.hub.kubernetes_spawner.GitHubKubeSpawner",
        "authenticator": "github",
    }


def test_hub_image_loads_its_config_in_local_mode(built, tmp_path: Path) -> None:
    """Local mode reads the tools `make up` installed: here, the image's own Python for each."""
    tools = tmp_path / "tools.env"
    tools.write_text("".join(f"{key}=/usr/local/bin/python\n" for key in TOOLS_FILE_KEYS.values()))

    shown = run(
        built("hub"),
        "python",
        "-c",
        CONFIG_SUMMARY,
        "/tmp/state",
        env={
            "MLOPS_IDE_MODE": "local",
            "MLOPS_IDE_HOME": "/tmp/state",
            "MLOPS_IDE_SERVICES": "mlflow",
            "MLOPS_IDE_AUTH": "shared",
        },
        mounts={tools: "/srv/mlops-ide/.tools.env:ro"},
    )

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout.splitlines()[-1]) == {
        "spawner": "mlops_ide.hub.local_spawner.LocalVSCodeSpawner",
        "authenticator": "mlops_ide.hub.authenticators.LocalPasswordAuthenticator",
    }


def test_hub_image_stops_naming_every_missing_setting(built) -> None:
    shown = run(built("hub"))  # the image's own command, kubernetes mode, no settings

    assert shown.returncode == 1
    assert "mlops-ide: cannot start the hub:" in shown.stderr
    for name in (
        "MLOPS_IDE_SINGLEUSER_IMAGE",
        "MLOPS_IDE_REPO_URL",
        "JUPYTERHUB_CRYPT_KEY",
        "CONFIGPROXY_AUTH_TOKEN",
    ):
        assert name in shown.stderr
    assert "Traceback" not in shown.stderr


# -- the app -----------------------------------------------------------------------------------------


def test_app_image_serves_its_page(built) -> None:
    port = free_port()
    app = Detached(
        built("app"),
        "streamlit",
        "run",
        "src/skin_cancer/app.py",
        "--server.address",
        "127.0.0.1",
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    )
    try:
        page = app.wait_for(f"http://127.0.0.1:{port}/", timeout=60)
        health = app.wait_for(f"http://127.0.0.1:{port}/_stcore/health", timeout=10)
    finally:
        app.remove()

    assert b"<title>Streamlit</title>" in page or b"<noscript>" in page
    assert health == b"ok"


# -- the pipeline and serving, on one MLflow server in the pipeline image -----------------------------


@pytest.fixture(scope="module")
def mlflow_in_pipeline_image(built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`mlflow server` of the pipeline image (its own MLflow) with a synthetic dataset beside."""
    data = tmp_path_factory.mktemp("images-data")
    data.chmod(0o777)
    image = built("pipeline")
    generated = run(
        image,
        "-c",
        "from pathlib import Path; from skin_cancer.synthetic import generate; "
        "generate(Path('/data/dataset'), train=40, test=20, size=64, seed=1)",
        mounts={data: "/data"},
        entrypoint="python",
    )
    assert generated.returncode == 0, generated.stderr
    port = free_port()
    # the command and environment the platform runs MLflow with, inside the image
    argv, env = mlflow_service.server_process(Path("/usr/local/bin/mlflow"), port, Path("/data"), environ={})
    server = Detached(image, *argv[1:], env=env, mounts={data: "/data"}, entrypoint=argv[0])
    try:
        server.wait_for(f"http://127.0.0.1:{port}/health", timeout=120)
        yield f"http://127.0.0.1:{port}", data
    finally:
        server.remove()


def task(step: str, arguments: dict, mlflow: tuple[str, Path]) -> dict | str:
    """`python -m skin_cancer.tasks <step> '<json>'` in the pipeline image, as a pod runs it."""
    url, data = mlflow
    done = run(
        images.tag_of("pipeline"),
        step,
        json.dumps(arguments),
        env={"MLFLOW_TRACKING_URI": url},
        mounts={data: "/data"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return step_result(done.stdout)


@pytest.fixture(scope="module")
def pipeline_run(mlflow_in_pipeline_image) -> dict:
    """One run of the DAG's steps in the pipeline image: preprocess, train, compare."""
    run_id = "manual__images"
    arrays = task(
        "preprocess",
        {"data_root": "/data/dataset", "work_root": "/data/work", "run_id": run_id},
        mlflow_in_pipeline_image,
    )
    trained = task(
        "train", {"kind": "basic_cnn", "arrays": arrays, "run_id": run_id}, mlflow_in_pipeline_image
    )
    champion = task("compare", {"results": [trained]}, mlflow_in_pipeline_image)
    return {"arrays": arrays, "trained": trained, "champion": champion}


def test_pipeline_image_runs_the_steps_on_the_synthetic_data(pipeline_run, mlflow_in_pipeline_image) -> None:
    _, data = mlflow_in_pipeline_image

    assert pipeline_run["arrays"] == "/data/work/manual__images/arrays"
    assert any((data / "work" / "manual__images" / "arrays").iterdir())
    assert pipeline_run["champion"]["version"] == pipeline_run["trained"]["version"]
    assert pipeline_run["trained"]["test_accuracy"] >= 0.9


def test_serving_image_answers_health_and_a_prediction(built, pipeline_run, mlflow_in_pipeline_image) -> None:
    url, data = mlflow_in_pipeline_image
    port = free_port()
    serving = Detached(
        built("serving"),
        "python",
        "-m",
        "skin_cancer.serving",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        env={"MLFLOW_TRACKING_URI": url},
    )
    try:
        health = json.loads(serving.wait_for(f"http://127.0.0.1:{port}/health", timeout=180))
        image = next((data / "dataset" / "test" / "malignant").glob("*.png"))
        answer = post_image(f"http://127.0.0.1:{port}/predict", image)
    finally:
        serving.remove()

    assert health == {"status": "ok", "model_version": pipeline_run["champion"]["version"]}
    assert answer["label"] in ("benign", "malignant")
    assert answer["model_version"] == health["model_version"]


def post_image(url: str, path: Path) -> dict:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())
