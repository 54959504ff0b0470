"""The previews' cluster policy's decisions (mlops_ide/in_airflow/preview_policy.py), without
Airflow: which slot a DAG file is in, which preview it belongs to, when it is refused; and
the bundles Airflow is configured with (machine/components/airflow.py). Real Airflow runs
the same code in tests/platform/test_preview_slots.py."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlops_ide.hub.modes import load
from mlops_ide.in_airflow import preview_policy
from mlops_ide.in_airflow.preview_policy import Refused, SlotFile, entry_for, slot_file
from mlops_ide.machine.components import airflow
from mlops_ide.machine.state import layout
from mlops_ide.machine.state.tools import Tools
from mlops_ide.portable import previews
from tests.support.local_platform import ROOT as CHECKOUT

ROOT = Path("/state/airflow/dag_bundles")
ALICE = previews.Entry("preview-1", "preview/alice/lr", "alice", "lr", "a" * 40, "alice", 1.0, 1.0)
BOB = previews.Entry("preview-1", "preview/bob/x", "bob", "x", "b" * 40, "bob", 1.0, 1.0)


def test_a_file_of_the_tracking_checkout_or_of_a_commit_is_the_slots() -> None:
    assert slot_file(f"{ROOT}/preview-1/tracking_repo/dags/a.py", ROOT) == SlotFile(
        "preview-1", tracking=True
    )
    assert slot_file(f"{ROOT}/preview-12/versions/{'c' * 40}/dags/a.py", ROOT) == SlotFile(
        "preview-12", tracking=False
    )


def test_files_of_other_bundles_are_not_a_slots() -> None:
    assert slot_file(f"{ROOT}/pipelines/tracking_repo/dags/a.py", ROOT) is None
    assert slot_file(f"{ROOT}/preview-01/tracking_repo/dags/a.py", ROOT) is None  # not a slot's name
    assert slot_file("/elsewhere/preview-1/tracking_repo/dags/a.py", ROOT) is None


def test_a_path_climbing_out_of_a_slot_is_judged_where_it_lands() -> None:
    climbing = f"{ROOT}/preview-1/tracking_repo/../../pipelines/tracking_repo/dags/a.py"
    assert slot_file(climbing, ROOT) is None  # main's file, parsed as main's by main's bundle
    into_slot = f"{ROOT}/pipelines/../preview-2/tracking_repo/dags/a.py"
    assert slot_file(into_slot, ROOT) == SlotFile("preview-2", tracking=True)


def test_a_file_elsewhere_in_a_slots_folder_is_refused() -> None:
    with pytest.raises(Refused, match="in the folder of preview slot preview-1 but not in a checkout"):
        slot_file(f"{ROOT}/preview-1/bare/hooks/a.py", ROOT)


def test_the_entry_of_the_slot_names_its_files() -> None:
    assert entry_for(SlotFile("preview-1", True), [ALICE], "preview/alice/lr") is ALICE
    # a task's commit folder: the entry alone (the run's DAG id must match it, or Airflow fails the task)
    assert entry_for(SlotFile("preview-1", False), [ALICE], None) is ALICE


def test_a_slot_with_no_entry_is_refused() -> None:
    other_slot = previews.Entry(**{**ALICE.__dict__, "slot": "preview-2"})
    with pytest.raises(Refused, match="preview slot preview-1 holds no preview"):
        entry_for(SlotFile("preview-1", True), [other_slot], "preview/alice/lr")


def test_a_slot_reassigned_after_its_checkout_is_refused_naming_both() -> None:
    with pytest.raises(Refused, match="now holds preview/bob/x, but its bundle checked out preview/alice/lr"):
        entry_for(SlotFile("preview-1", True), [BOB], "preview/alice/lr")
    with pytest.raises(Refused, match="checked out nothing"):
        entry_for(SlotFile("preview-1", True), [BOB], None)


def test_the_checked_out_file_round_trips_and_unreadable_means_nothing(tmp_path: Path) -> None:
    assert preview_policy.checked_out_branch(tmp_path) is None
    preview_policy.write_checked_out(tmp_path, "preview/alice/lr", "a" * 40)
    assert preview_policy.checked_out_branch(tmp_path) == "preview/alice/lr"
    assert (tmp_path / preview_policy.CHECKED_OUT).stat().st_mode & 0o777 == 0o644
    preview_policy.write_checked_out(tmp_path, None, None)
    assert preview_policy.checked_out_branch(tmp_path) is None
    (tmp_path / preview_policy.CHECKED_OUT).write_text(json.dumps({"branch": ["x"]}))
    assert preview_policy.checked_out_branch(tmp_path) is None


def test_without_a_registry_setting_a_slots_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(previews.ENV, raising=False)
    with pytest.raises(Refused, match=f"preview slot preview-1: {previews.ENV} is not set"):
        preview_policy.preview_of(f"{ROOT}/preview-1/versions/{'c' * 40}/dags/a.py", ROOT)
    assert preview_policy.preview_of(f"{ROOT}/pipelines/tracking_repo/dags/a.py", ROOT) is None


def test_a_broken_registry_refuses_a_slots_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = tmp_path / "previews.json"
    registry.write_text('{"previews": [{"slot": "preview-1"}]}')
    monkeypatch.setenv(previews.ENV, str(registry))
    with pytest.raises(Refused, match="is not the previews' registry"):
        preview_policy.preview_of(f"{ROOT}/preview-1/versions/{'c' * 40}/dags/a.py", ROOT)


TEMPLATE = "{{ var.value.mlflow_preview_token }}"


def test_the_experiment_and_the_preview_token_template_are_added_to_an_environment_dict_or_none() -> None:
    assert preview_policy.with_preview_variables(None, "preview/alice/lr") == {
        "MLFLOW_EXPERIMENT_NAME": "preview/alice/lr",
        "MLFLOW_TRACKING_TOKEN": TEMPLATE,
    }
    main = {"A": "1", "MLFLOW_EXPERIMENT_NAME": "main", "MLFLOW_TRACKING_TOKEN": "the-pipelines"}
    assert preview_policy.with_preview_variables(main, "preview/a/b") == {
        "A": "1",
        "MLFLOW_EXPERIMENT_NAME": "preview/a/b",
        "MLFLOW_TRACKING_TOKEN": TEMPLATE,
    }
    with pytest.raises(Refused, match="whose environment is a str"):
        preview_policy.with_preview_variables("A=1", "preview/a/b")


def bundles(home: Path, **environ: str) -> list[dict]:
    return airflow.dag_bundles(load({"MLOPS_IDE_HOME": str(home), **environ}))


def test_airflow_gets_one_bundle_per_preview_slot_beside_the_tracked_branch(tmp_path: Path) -> None:
    main, *slots = bundles(tmp_path, MLOPS_IDE_PREVIEW_SLOTS="2")
    assert main["name"] == airflow.BUNDLE_NAME and main["kwargs"]["tracking_ref"] == "main"
    assert slots == [
        {
            "name": name,
            "classpath": "mlops_ide.in_airflow.preview_bundle.PreviewSlotBundle",
            "kwargs": {"git_conn_id": airflow.GIT_CONN_ID, "refresh_interval": 3, "subdir": "dags"},
        }
        for name in ("preview-1", "preview-2")
    ]


def test_no_slots_when_previews_are_off_and_no_subdir_for_the_whole_repository(tmp_path: Path) -> None:
    assert [bundle["name"] for bundle in bundles(tmp_path, MLOPS_IDE_PREVIEW_SLOTS="0")] == [
        airflow.BUNDLE_NAME
    ]
    every = bundles(tmp_path, MLOPS_IDE_PREVIEW_SLOTS="1", MLOPS_IDE_DAGS_FOLDER=".")
    assert [bundle["kwargs"].get("subdir") for bundle in every] == [None, None]


def test_the_registry_is_beside_the_push_status(tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path)})
    assert layout.previews_registry(settings) == tmp_path / "push-status" / "previews.json"


def test_a_dag_whose_id_has_a_double_underscore_is_refused_naming_the_rule() -> None:
    """Else `train__daily` of preview/alice/lr and `train` of preview/daily__alice/lr would
    both be `train__daily__alice_lr`."""
    dag = SimpleNamespace(dag_id="train__daily", tags=set(), tasks=[])
    with pytest.raises(Refused, match="'train__daily' has `__` or ends with `_`"):
        preview_policy.rename(dag, ALICE)
    assert dag.dag_id == "train__daily"
    fine = SimpleNamespace(dag_id="train_daily", tags={"x"}, tasks=[])
    preview_policy.rename(fine, ALICE)
    assert (fine.dag_id, fine.tags) == ("train_daily__alice_lr", {"x", "preview/alice/lr", "by:alice"})


class _BasePythonVirtualenvOperator:  # named as Airflow's: the policy knows runners by class name
    template_fields = ("python", "templates_dict", "op_args", "op_kwargs")  # as the provider's
    _pre_execute_hook = None


class ExternalPythonOperator(_BasePythonVirtualenvOperator):
    def __init__(self, env_vars: dict | None = None) -> None:
        self.env_vars = env_vars


class DockerOperator:
    template_fields = ("image", "command", "environment")
    _pre_execute_hook = None

    def __init__(self) -> None:
        self.environment = {"MLFLOW_TRACKING_TOKEN": "from-the-dag"}


class PythonTask:  # `@task`, PythonOperator, BashOperator...: run in the task's process
    template_fields = ("op_args",)

    def __init__(self, pre_execute=None) -> None:
        self._pre_execute_hook = pre_execute


class MappedTask:  # a MappedOperator: its arguments wait in partial_kwargs
    operator_class = PythonTask

    def __init__(self, **partial_kwargs) -> None:
        self.partial_kwargs = partial_kwargs


class FakeDag:
    def __init__(self, *tasks: object) -> None:
        self.dag_id, self.tags, self.tasks = "cnn_skin_cancer_workflow", None, list(tasks)


TOKEN = "0123456789abcdef-the-preview-token"


@pytest.fixture
def task_process(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A task's process as Airflow's: the preview token in its environment, the pipeline's
    MLflow token too; what the hook sets is undone after the test."""
    monkeypatch.setenv("AIRFLOW_VAR_MLFLOW_PREVIEW_TOKEN", TOKEN)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "the-pipelines-token")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "unset")  # recorded, so what the hook sets is undone
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    monkeypatch.setattr(preview_policy, "airflow_variable", lambda name: None)  # no Airflow here
    return monkeypatch


def hook_of(task):
    return task.partial_kwargs["pre_execute"] if hasattr(task, "partial_kwargs") else task._pre_execute_hook


def test_every_task_of_a_preview_gets_the_hook_and_none_holds_the_token(task_process) -> None:
    external, docker, plain, mapped = (
        ExternalPythonOperator({"A": "1"}),
        DockerOperator(),
        PythonTask(),
        MappedTask(),
    )
    dag = FakeDag(external, docker, plain, mapped)
    preview_policy.rename(dag, ALICE)
    assert all(hook_of(task).__name__ == "use_preview_identity" for task in dag.tasks)
    assert external.env_vars == {"A": "1"}  # at parse, untouched: not rendered, not stored with it
    assert "env_vars" not in external.template_fields
    assert docker.environment["MLFLOW_TRACKING_TOKEN"] == TEMPLATE  # a container gets it explicitly
    assert docker.template_fields.count("environment") == 1
    assert TOKEN not in repr([vars(task) for task in dag.tasks]) + repr(vars(dag))


def test_the_hook_gives_the_task_process_the_preview_token_and_experiment(task_process) -> None:
    plain = PythonTask()
    preview_policy.rename(FakeDag(plain), ALICE)
    plain._pre_execute_hook({"task": plain})
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == TOKEN
    assert os.environ["MLFLOW_EXPERIMENT_NAME"] == "preview/alice/lr"


def test_an_external_python_task_without_the_workers_environment_gets_both_in_env_vars(task_process) -> None:
    external = ExternalPythonOperator({"MLFLOW_TRACKING_TOKEN": "the-pipelines-token", "A": "1"})
    preview_policy.rename(FakeDag(external), ALICE)
    external._pre_execute_hook({"task": external})
    assert external.env_vars == {
        "A": "1",
        "MLFLOW_TRACKING_TOKEN": TOKEN,
        "MLFLOW_EXPERIMENT_NAME": "preview/alice/lr",
    }


def test_without_the_preview_token_the_task_fails_never_running_as_the_pipeline(task_process) -> None:
    task_process.delenv("AIRFLOW_VAR_MLFLOW_PREVIEW_TOKEN")
    ran = []
    plain = PythonTask(pre_execute=ran.append)
    preview_policy.rename(FakeDag(plain), ALICE)
    with pytest.raises(RuntimeError, match="cannot get the preview identity's MLflow token"):
        plain._pre_execute_hook({"task": plain})
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "the-pipelines-token"  # untouched, and not run:
    assert "MLFLOW_EXPERIMENT_NAME" not in os.environ and ran == []


def test_an_authors_own_pre_execute_still_runs_after_the_preview_identity(task_process) -> None:
    seen = []
    plain = PythonTask(pre_execute=lambda context: seen.append(os.environ["MLFLOW_TRACKING_TOKEN"]))
    mapped = MappedTask(pre_execute=lambda context: seen.append("mapped"))
    preview_policy.rename(FakeDag(plain, mapped), ALICE)
    plain._pre_execute_hook({"task": plain})
    mapped.partial_kwargs["pre_execute"]({"task": None})
    assert seen == [TOKEN, "mapped"]


# Run in Airflow's virtualenv (the provider and the Kubernetes client are there alone): real
# KubernetesPodOperators, one mapped, through the policy; prints each pod's env as sent.
POD_PROBE = """
import json
from airflow.sdk import DAG
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import ApiClient
from mlops_ide.in_airflow import preview_policy
from mlops_ide.portable import previews

ALICE = previews.Entry("preview-1", "preview/alice/lr", "alice", "lr", "a" * 40, "alice", 1.0, 1.0)
literal = {"A": "1", "MLFLOW_TRACKING_TOKEN": "the-pipelines-token-as-a-literal"}
with DAG("hello", schedule=None) as dag:
    KubernetesPodOperator(task_id="plain", image="x", namespace="p", env_vars=literal)
    KubernetesPodOperator.partial(task_id="mapped", image="x", namespace="p", env_vars=literal).expand(
        cmds=[["a"], ["b"]]
    )
preview_policy.rename(dag, ALICE)
plain, mapped = dag.tasks
unmapped = KubernetesPodOperator(
    task_id="unmapped", image="x", namespace="p", env_vars=mapped.partial_kwargs["env_vars"]
)
pods = {"plain": plain, "mapped": unmapped}
print(json.dumps({
    name: ApiClient().sanitize_for_serialization(task.build_pod_request_obj(None, dry_run=True))[
        "spec"]["containers"][0]["env"]
    for name, task in pods.items()
}))
"""


def test_a_previews_pod_takes_the_token_from_the_preview_secret_whatever_its_dag_set() -> None:
    """A KubernetesPodOperator whose DAG sets MLFLOW_TRACKING_TOKEN itself (a literal, in a
    dict), mapped or not: one MLFLOW_TRACKING_TOKEN in the pod, from the Secret
    mlflow-preview-token, and the literal nowhere."""
    result = subprocess.run(
        [str(Tools.load().airflow_python), "-c", POD_PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(CHECKOUT / "src")},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    pods = json.loads(result.stdout.strip().splitlines()[-1])
    secret = {"secretKeyRef": {"name": "mlflow-preview-token", "key": "token"}}
    for name in ("plain", "mapped"):
        assert pods[name] == [
            {"name": "A", "value": "1"},
            {"name": "MLFLOW_EXPERIMENT_NAME", "value": "preview/alice/lr"},
            {"name": "MLFLOW_TRACKING_TOKEN", "valueFrom": secret},
        ], name
    assert "the-pipelines-token-as-a-literal" not in result.stdout


class KubernetesPodOperator(PythonTask):  # named as Airflow's: its pod gets the token from a Secret
    template_fields = ("env_vars",)
    env_vars = None


def test_a_pod_step_starts_on_kubernetes_with_no_preview_variable_its_pod_has_the_secret(
    task_process,
) -> None:
    """On Kubernetes Airflow's processes hold no preview Variable: the pod's token comes from the
    Secret mlflow-preview-token, so its operator's process needs none; any other task refuses."""
    task_process.delenv("AIRFLOW_VAR_MLFLOW_PREVIEW_TOKEN")
    pod, plain = KubernetesPodOperator(), PythonTask()
    for task in (pod, plain):  # the hook alone: the pod's env_vars need the Kubernetes client
        preview_policy.give_preview_hook(task, "preview/alice/lr")

    pod._pre_execute_hook({"task": pod})

    assert os.environ["MLFLOW_EXPERIMENT_NAME"] == "preview/alice/lr"
    with pytest.raises(RuntimeError, match="cannot get the preview identity's MLflow token"):
        plain._pre_execute_hook({"task": plain})
