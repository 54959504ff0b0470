"""jupyterhub_config.py only sets configuration, and an operator's own files in
MLOPS_IDE_HUB_CONFIG_DIR come last."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ide.machine.components.base import HealthCheck
from tests.support.kubernetes_hub_tools import hub_config, kubernetes_env


def snapshot(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


def prepared_state(tmp_path: Path, **secrets: str) -> Path:
    """A state folder as `make up` leaves it for the hub: its password and `secrets`
    (relative path -> content)."""
    state = tmp_path / "state"
    for path, content in {"password": "prepared-password", **secrets}.items():
        (state / path).parent.mkdir(parents=True, exist_ok=True)
        (state / path).write_text(content + "\n")
    return state


def test_local_config_refuses_an_unprepared_state_folder_and_makes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"

    with pytest.raises(SystemExit) as stopped:
        hub_config(monkeypatch, {"MLOPS_IDE_HOME": str(state)})

    assert "is missing: start the platform with `make up`" in str(stopped.value)
    assert not state.exists()


def test_local_config_reads_the_prepared_state_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = prepared_state(
        tmp_path,
        **{
            "airflow-auth/mlflow_token": "pipeline-token",
            "airflow-auth/mlflow_preview_token": "preview-token",
        },
    )
    before = snapshot(state)

    c = hub_config(
        monkeypatch,
        {"MLOPS_IDE_HOME": str(state), "MLOPS_IDE_SERVICES": "mlflow", "MLOPS_IDE_AUTH": "shared"},
    )

    assert c.SharedPasswordAuthenticator.user_password == "prepared-password"
    assert c.Spawner.environment["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000/services/mlflow"
    assert c.JupyterHub.template_vars["platform_services"] == {
        "MLflow": "/services/mlflow/#/experiments?workflowType=machine_learning"  # its classic mode
    }
    assert c.JupyterHub.template_vars["platform_waiting"] == {}  # MLflow waits for nothing
    (health,) = (handler for handler in c.JupyterHub.extra_handlers if handler[0] == r"/platform/health")
    assert health[2]["checks"] == {"MLflow": HealthCheck("http://127.0.0.1:5000/services/mlflow/health")}
    # MLflow's gate is a hub service; the pipeline's token is registered, users get the scope
    gate, pipeline = (
        service for service in c.JupyterHub.services if service["name"] in ("mlflow", "pipeline")
    )
    assert gate["url"] == "http://127.0.0.1:5000" and gate["oauth_no_confirm"] is True
    assert pipeline == {"name": "pipeline", "api_token": "pipeline-token", "display": False}
    roles = {role["name"]: role for role in c.JupyterHub.load_roles}
    assert "access:services!service=mlflow" in roles["user"]["scopes"]
    assert roles["pipeline"]["services"] == ["pipeline"]
    # a preview's tasks: their own identity, which the gate keeps from `champion`, MLflow alone
    (preview,) = (service for service in c.JupyterHub.services if service["name"] == "pipeline-preview")
    assert preview == {"name": "pipeline-preview", "api_token": "preview-token", "display": False}
    assert roles["pipeline-preview"] == {
        "name": "pipeline-preview",
        "scopes": ["access:services!service=mlflow"],
        "services": ["pipeline-preview"],
    }
    assert c.LocalVSCodeSpawner.mlflow_token is True
    assert snapshot(state) == before


def test_airflow_is_a_hub_service_the_hub_does_not_wait_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Airflow's UI through the hub, the hub as its login; Airflow starts after the hub,
    which must not wait its default 30 s for it at every start."""
    state = prepared_state(tmp_path, **{"airflow-auth/hub_oauth_secret": "client-secret"})

    c = hub_config(
        monkeypatch,
        {"MLOPS_IDE_HOME": str(state), "MLOPS_IDE_SERVICES": "airflow", "MLOPS_IDE_AUTH": "shared"},
    )

    (airflow,) = (service for service in c.JupyterHub.services if service["name"] == "airflow")
    assert airflow["url"] == "http://127.0.0.1:8080" and airflow["api_token"] == "client-secret"
    assert airflow["oauth_redirect_uri"] == "http://127.0.0.1:8000/services/airflow/auth/hub/callback"
    assert airflow["timeout"] <= 5
    user = next(role for role in c.JupyterHub.load_roles if role["name"] == "user")
    assert "access:services!service=airflow" in user["scopes"]


def test_the_command_line_reaches_the_hub_as_a_service_that_may_only_delete_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = prepared_state(tmp_path, accounts_token="accounts-token")

    c = hub_config(monkeypatch, {"MLOPS_IDE_HOME": str(state), "MLOPS_IDE_SERVICES": "none"})

    (accounts,) = (service for service in c.JupyterHub.services if service["name"] == "accounts")
    assert accounts == {"name": "accounts", "api_token": "accounts-token", "display": False}
    (role,) = (role for role in c.JupyterHub.load_roles if role["name"] == "accounts")
    assert role == {"name": "accounts", "scopes": ["delete:users"], "services": ["accounts"]}


def test_the_operators_files_come_last_in_name_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "config.d"
    own.mkdir()
    (own / "20-timeout.py").write_text("c.KubeSpawner.start_timeout = c.KubeSpawner.start_timeout * 2\n")
    (own / "10-nodes.py").write_text(
        "if settings.mode == 'kubernetes':\n"
        "    c.KubeSpawner.node_selector = {'pool': 'users-' + settings.repo_branch}\n"
        "    c.KubeSpawner.start_timeout = 450\n"
    )
    (own / "30-disabled.py.example").write_text("raise SystemExit('not read')\n")

    c = hub_config(monkeypatch, kubernetes_env(tmp_path, MLOPS_IDE_HUB_CONFIG_DIR=str(own)))

    assert c.KubeSpawner.node_selector == {"pool": "users-main"}
    assert c.KubeSpawner.start_timeout == 900  # 10- ran before 20-, after ours (600)


def test_the_shipped_example_sets_a_node_selector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    own = tmp_path / "config.d"
    own.mkdir()
    example = Path(__file__).resolve().parents[2] / "jupyterhub_config.d" / "10-user-node-pool.py.example"
    (own / "10-user-node-pool.py").write_text(example.read_text())

    c = hub_config(monkeypatch, kubernetes_env(tmp_path, MLOPS_IDE_HUB_CONFIG_DIR=str(own)))

    assert c.KubeSpawner.node_selector == {"mlops-ide/role": "user"}
