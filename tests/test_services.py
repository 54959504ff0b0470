"""The service registry: `make up`, the port check, the home page and the settings table
all come from one module per service."""

from __future__ import annotations

import json
import socket
import sys
import textwrap
from pathlib import Path

import pytest

from mlops_ide import services
from mlops_ide.local_state import Tools
from mlops_ide.modes import load
from mlops_ide.services import Platform
from mlops_ide.settings import table
from mlops_ide.up import banner, check_ports_free


def test_the_registry_holds_each_service_once_the_hubs_first() -> None:
    names = [service.name for service in services.REGISTRY]

    # the git service the hub routes to first (the hub waits for it at start), then the hub
    assert names[:2] == ["git", "hub"] and sorted(names) == [
        "airflow",
        "app",
        "git",
        "hub",
        "mlflow",
        "serving",
    ]
    assert tuple(names[2:]) == services.OPTIONAL
    assert load({}).services == services.OPTIONAL  # all of them run by default


def test_each_service_declares_its_port_settings_in_the_table() -> None:
    declared = {row.name for row in table.rows()}
    settings = load({})
    for service in services.REGISTRY:
        assert {port.setting for port in service.ports(settings)} <= declared, service.name


def test_a_new_service_is_one_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "more_services"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "notebook_viewer.py").write_text(
        textwrap.dedent(
            """
            from mlops_ide.services import PlatformService, Port

            SERVICE = PlatformService(
                name="viewer", title="Viewer", order=5, processes=lambda platform: [],
                ports=lambda settings: [Port("127.0.0.1", 8765, "MLOPS_IDE_VIEWER_PORT", "the viewer")],
            )
            """
        )
    )
    (package / "helpers.py").write_text("VALUE = 1\n")  # no SERVICE: not a service
    monkeypatch.syspath_prepend(str(tmp_path))

    found = services.discover("more_services")

    assert [service.name for service in found] == ["viewer"]
    sys.modules.pop("more_services", None)


def test_two_services_with_one_name_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "twins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for module in ("one", "two"):
        (package / f"{module}.py").write_text(
            "from mlops_ide.services import PlatformService\n"
            "SERVICE = PlatformService(name='same', title='S', order=1, processes=list, ports=list)\n"
        )
    monkeypatch.syspath_prepend(str(tmp_path))

    with pytest.raises(ValueError, match="same name"):
        services.discover("twins")


def test_the_port_check_covers_every_running_service_and_only_those() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        base = {"MLOPS_IDE_PORT": "18000", "MLOPS_IDE_SERVING_PORT": str(port)}

        with_serving = check_ports_free(load({**base, "MLOPS_IDE_SERVICES": "serving"}))
        without = check_ports_free(load({**base, "MLOPS_IDE_SERVICES": "mlflow"}))

    assert len(with_serving) == 1 and "set MLOPS_IDE_SERVING_PORT to another port" in with_serving[0]
    assert without == []


def test_clients_are_pointed_at_mlflow_only_when_it_runs() -> None:
    assert services.client_env(load({})) == {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000/services/mlflow"}
    assert services.client_env(load({"MLOPS_IDE_SERVICES": "serving,app"})) == {}


def test_the_banner_names_each_running_service_with_its_page() -> None:
    settings = load({"MLOPS_IDE_SERVICES": "serving,airflow", "MLOPS_IDE_PASSWORD": "a-password"})

    lines = banner(settings, "a-password", made=False, seconds=1.0)

    assert "   Serving: http://127.0.0.1:8500/docs  (the champion model's API)" in lines
    assert "   Airflow: http://127.0.0.1:8000/services/airflow/  (your hub login)" in lines
    assert not any("MLflow" in line or "App:" in line for line in lines)


def test_every_service_builds_its_processes_from_the_settings(tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path), "MLOPS_IDE_AIRFLOW_PORT": "18080"})
    platform = Platform(settings, Tools.load(), "a-password")

    built = {service.name: service.processes(platform) for service in services.REGISTRY}

    assert [p.name for p in built["airflow"]] == [
        "Airflow API server",
        "Airflow scheduler",
        "Airflow DAG processor",
        "Airflow triggerer",
        "Airflow push check",  # the local remote's hooks ask it: does the push load, what is live
    ]
    assert "--socket-fd" in built["airflow"][-1].argv and "--skip-serve-logs" in built["airflow"][1].argv
    # under the prefix the hub serves it at: its sub-applications answer there only
    assert built["airflow"][0].ready_url == "http://127.0.0.1:18080/services/airflow/api/v2/monitor/health"
    # MLflow on its socket only; serving and Airflow reach it through the gate, as the pipeline
    mlflow_argv = built["mlflow"][0].argv
    assert "--port" not in mlflow_argv and f"--uds {tmp_path / 'mlflow' / 'sock'}" in mlflow_argv
    assert built["mlflow"][0].ready_url.startswith("http+unix://")
    pipeline_token = (tmp_path / "airflow-auth" / "mlflow_token").read_text().strip()
    for process in (built["serving"][0], *built["airflow"][:4]):
        assert process.env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000/services/mlflow", process.name
        assert process.env["MLFLOW_TRACKING_TOKEN"] == pipeline_token, process.name
    assert built["app"][0].env["SKIN_CANCER_API_URL"] == "http://127.0.0.1:8500"
    assert all(p.log.parent == tmp_path / "logs" for processes in built.values() for p in processes)
    # Airflow's users file: admin and the hub's admins, a password of Airflow's own (a DAG can
    # read it: never the hub's), readable by its owner only (and the pipeline's account, as root)
    passwords = json.loads((tmp_path / "airflow-auth" / "passwords.json").read_text())
    assert set(passwords) == {"mlops-ide-platform"} and "a-password" not in passwords.values()
    assert (tmp_path / "airflow-auth" / "passwords.json").stat().st_mode & 0o777 == 0o600
