"""The use case end to end on the real platform: Airflow runs the workflow DAG on the
seeded synthetic dataset, MLflow registers three models and names a champion, serving
answers with it, and the test-inference DAG passes."""

from __future__ import annotations

import pytest
import requests

from tests.support.airflow_api import AirflowAPI
from tests.support.browser_tools import log_in
from tests.support.local_platform import PlatformConfig, RunningPlatform, wait_for

MODEL = "skin_cancer_cnn"


PLATFORM = PlatformConfig("usecase", {"MLOPS_IDE_SERVICES": "airflow,mlflow,serving,app"}, timeout=240)


@pytest.fixture(scope="module")
def airflow(platform: RunningPlatform) -> AirflowAPI:
    api = AirflowAPI(platform.airflow_url, platform.airflow_password)
    wait_for(lambda: api.dag("cnn_skin_cancer_workflow"), 120, "the use-case DAGs to be parsed")
    return api


@pytest.fixture(scope="module")
def workflow_run(airflow: AirflowAPI) -> dict:
    return airflow.wait_for_run(
        "cnn_skin_cancer_workflow", airflow.trigger("cnn_skin_cancer_workflow"), timeout=420
    )


@pytest.mark.browser
def test_before_a_champion_the_home_page_says_serving_waits_for_the_workflow(
    browser, platform: RunningPlatform
) -> None:
    """Before the first workflow run (module order: this runs first), serving is up with no
    model: the home page says what it waits for and where to start it, not an error code."""
    health = platform.login("alice").get(f"{platform.url}/hub/platform/health", timeout=30).json()
    assert health["Serving"] == "waiting: no champion model yet: run cnn_skin_cancer_workflow"

    page = browser.new_page()
    log_in(page, platform, "alice")
    page.goto(f"{platform.url}/hub/home")
    row = page.locator("tr.platform-tool", has_text="Serving")
    row.locator(".tool-health.text-bg-warning").wait_for(timeout=30_000)
    step = row.locator(".tool-waiting-step")
    assert step.is_visible()
    assert step.get_attribute("href").endswith("/services/airflow/dags/cnn_skin_cancer_workflow")
    assert page.locator("#first-steps", has_text="mlops-ide dag check").is_visible()
    page.close()


def test_the_workflow_dag_succeeds(workflow_run: dict) -> None:
    assert workflow_run["state"] == "success"


def mlflow_gate(platform: RunningPlatform) -> tuple[str, str]:
    """MLflow's address through its gate, and the pipeline's token: what Airflow's tasks get."""
    token = (platform.home / "airflow-auth" / "mlflow_token").read_text().strip()
    return f"http://127.0.0.1:{platform.env['MLOPS_IDE_MLFLOW_PORT']}/services/mlflow", token


def mlflow_api(platform: RunningPlatform) -> tuple[str, dict[str, str]]:
    """MLflow's API through its gate, and the pipeline's token (reads are anyone's)."""
    gate, token = mlflow_gate(platform)
    return f"{gate}/api/2.0/mlflow", {"Authorization": f"Bearer {token}"}


def assert_three_models_and_the_best_is_champion(platform: RunningPlatform) -> None:
    """What a workflow run leaves in MLflow's registry, whatever ran its steps."""
    mlflow, auth = mlflow_api(platform)
    versions = requests.get(
        f"{mlflow}/model-versions/search", params={"filter": f"name='{MODEL}'"}, headers=auth, timeout=30
    ).json()["model_versions"]
    champion = requests.get(
        f"{mlflow}/registered-models/alias",
        params={"name": MODEL, "alias": "champion"},
        headers=auth,
        timeout=30,
    ).json()["model_version"]

    tags = [{tag["key"]: tag["value"] for tag in version.get("tags", [])} for version in versions]
    assert sorted(tag.get("model_kind", "") for tag in tags) == ["basic_cnn", "crossval", "resnet50"], tags
    accuracies = {v["version"]: float(tag["test_accuracy"]) for v, tag in zip(versions, tags, strict=True)}
    assert accuracies[champion["version"]] == max(accuracies.values())


def test_three_models_are_registered_and_the_best_is_champion(
    platform: RunningPlatform, workflow_run: dict
) -> None:
    assert_three_models_and_the_best_is_champion(platform)


def test_serving_answers_with_the_new_champion(platform: RunningPlatform, workflow_run: dict) -> None:
    serving = f"http://127.0.0.1:{platform.env['MLOPS_IDE_SERVING_PORT']}"
    mlflow, auth = mlflow_api(platform)
    champion = requests.get(
        f"{mlflow}/registered-models/alias",
        params={"name": MODEL, "alias": "champion"},
        headers=auth,
        timeout=30,
    ).json()["model_version"]

    assert requests.get(f"{serving}/model", timeout=30).json()["version"] == champion["version"]


def test_the_test_inference_dag_passes(airflow: AirflowAPI, workflow_run: dict) -> None:
    run = airflow.wait_for_run(
        "cnn_skin_cancer_test_inference", airflow.trigger("cnn_skin_cancer_test_inference")
    )

    assert run["state"] == "success"


def test_the_home_page_reports_every_service_healthy(platform: RunningPlatform, workflow_run: dict) -> None:
    health = platform.login("alice").get(f"{platform.url}/hub/platform/health", timeout=30).json()

    assert health == {"Airflow": "healthy", "MLflow": "healthy", "Serving": "healthy", "App": "healthy"}


@pytest.mark.browser
def test_after_the_workflow_the_home_page_shows_serving_healthy(
    browser, platform: RunningPlatform, workflow_run: dict
) -> None:
    page = browser.new_page()
    log_in(page, platform, "alice")
    page.goto(f"{platform.url}/hub/home")
    row = page.locator("tr.platform-tool", has_text="Serving")
    row.locator(".tool-health.text-bg-success", has_text="healthy").wait_for(timeout=30_000)
    assert not row.locator(".tool-waiting-step").is_visible()  # the step it waited for is done
    page.close()
