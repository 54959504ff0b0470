"""The Streamlit app (its own light virtualenv), as the pipeline's account when the
platform runs as root: upload an image, see the prediction."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlops_ide import names
from mlops_ide.machine.components import serving
from mlops_ide.machine.components.base import Component, Inputs, Port, port_setting, process
from mlops_ide.machine.state.layout import code_lib
from mlops_ide.settings import Settings

if TYPE_CHECKING:  # the hub reads these declarations; only `make up` runs processes
    from mlops_ide.supervisor.runner import Process

PORT = port_setting("MLOPS_IDE_APP_PORT", "app_port", "the Streamlit app", 8501)


def url(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.app_port}"


def processes(inputs: Inputs) -> list[Process]:
    settings = inputs.settings
    app = code_lib(settings) / "skin_cancer" / "app.py"
    argv = [str(inputs.tools.app_python), "-m", "streamlit", "run", str(app)]
    argv += ["--server.address", "127.0.0.1", "--server.port", str(settings.app_port)]
    argv += ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
    argv += ["--client.toolbarMode", "viewer"]  # no Deploy, Rerun or Clear cache: people use it
    ready = f"{url(settings)}/_stcore/health"
    env = {"SKIN_CANCER_API_URL": serving.url(settings)}
    return [process(inputs, "App", argv, ready, env=env, account=names.PIPELINE_ACCOUNT)]


COMPONENT = Component(
    name="app",
    title="App",
    order=30,
    settings=(PORT,),
    processes=processes,
    ports=lambda settings: [Port("127.0.0.1", settings.app_port, PORT.name, "the Streamlit app")],
    url=url,
    health="/_stcore/health",
    banner="(upload an image, see the prediction)",
)
