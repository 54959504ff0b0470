"""Airflow's cluster policy for previews (airflow_local_settings imports `dag_policy`): a DAG
parsed from a preview slot's bundle (preview_bundle.py) gets the id of its preview
(`cnn_skin_cancer_workflow__alice_lr`), the branch and `by:<pusher>` as tags, is paused when
it is new, and its tasks record to the preview's MLflow experiment with the preview identity
(hub service `pipeline-preview`: never `champion`). DAGs of other bundles
are left alone.

Which preview a file belongs to is the registry's entry for its slot (portable/previews.py).
A file of the slot's tracking checkout is named only when the entry names the branch the
bundle checked out (its CHECKED_OUT file): a slot reassigned between the bundle's refresh and
the parse is refused, never parsed under the new owner's name. A file with no entry (a slot
freed, a missing or broken registry) is refused: Airflow records an import error saying why,
and the DAG is not loaded under any id, least of all the original's (main's).

A task's run parses the same file again from the commit's folder (`versions/<sha>`) with the
same entry, so it finds its DAG under the same id; when its slot went to another preview
meanwhile, the id differs and Airflow fails the task (its DAG is not found).

Not a boundary against the code pushed: a DAG file runs Python in the process that parses it
and could undo any policy. Who may push a preview may push the tracked branch (the same
trust, docs/previews.md); the renaming keeps previews apart from main's DAGs by construction.
Importable without Airflow (its exceptions are imported when a DAG is refused), so the
decisions are tested on their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePath

from mlops_ide.portable import previews

CHECKED_OUT = "checked-out.json"  # in a slot's bundle folder, written by its bundle at each refresh
TRACKING = "tracking_repo"  # GitDagBundle's folders under the bundle's
VERSIONS = "versions"
EXPERIMENT_VARIABLE = "MLFLOW_EXPERIMENT_NAME"  # skin_cancer.tasks records there when set
TOKEN_VARIABLE = "MLFLOW_TRACKING_TOKEN"  # MLflow's client sends it to the gate
# The preview identity's hub token (hub service `pipeline-preview`, which never moves `champion`),
# as a template Airflow renders when the task runs, from the Variable its processes' environment
# holds (AIRFLOW_VAR_MLFLOW_PREVIEW_TOKEN, machine/components/mlflow.py): the token itself is
# never in the DAG, which the DAG processor stores in Airflow's database and shows in its UI.
# The name holds `token`, so Airflow's secrets masker hides the value in rendered fields and logs.
TOKEN_TEMPLATE = "{{ var.value.mlflow_preview_token }}"
# A pod step's token: from this Secret of the pipeline's namespace (key `token`, docs/kubernetes.md),
# as the pipeline's is from `mlflow-pipeline-token`: a rendered value would show in the pod's spec.
POD_IDENTITY_SOURCE = "mlflow-preview-token"
POD_IDENTITY_KEY = "token"
PREVIEW_TOKEN_NAME = "mlflow_preview_token"  # the Variable; below as in Airflow's environment
PREVIEW_TOKEN_ENV = "AIRFLOW_VAR_MLFLOW_PREVIEW_TOKEN"


class Refused(Exception):
    """A DAG file of a slot that must not load now; the message says why and what happens next."""


@dataclass(frozen=True)
class SlotFile:
    slot: str
    tracking: bool  # the tracking checkout (the DAG processor), else a commit's folder (a task)


def slot_file(fileloc: str, storage_root: Path) -> SlotFile | None:
    """The slot whose bundle folder holds `fileloc`, None for any other bundle's file. Paths as
    Airflow gives them, never resolved: a link in a branch must not make a preview's file look
    like main's. A slot's file that is neither in its tracking checkout nor in a commit's
    folder is refused (the free folder is empty: nothing of it is ever parsed)."""
    try:
        parts = PurePath(os.path.normpath(fileloc)).relative_to(os.path.normpath(storage_root)).parts
    except ValueError:
        return None
    if not parts or not previews.is_slot(parts[0]):
        return None
    if len(parts) > 2 and parts[1] == TRACKING:
        return SlotFile(parts[0], tracking=True)
    if len(parts) > 3 and parts[1] == VERSIONS:
        return SlotFile(parts[0], tracking=False)
    raise Refused(f"{fileloc} is in the folder of preview slot {parts[0]} but not in a checkout of it")


def write_checked_out(bundle_folder: Path, branch: str | None, commit: str | None) -> None:
    """What the slot's tracking checkout holds now (None: the slot is free), atomically, for
    the parses that follow (other processes, other accounts: readable by all)."""
    text = json.dumps({"branch": branch, "commit": commit}) + "\n"
    bundle_folder.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{CHECKED_OUT}.", dir=bundle_folder)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            os.fchmod(out.fileno(), 0o644)
        os.replace(partial, bundle_folder / CHECKED_OUT)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
        raise


def checked_out_branch(bundle_folder: Path) -> str | None:
    """The branch the slot's tracking checkout holds; None when free, never refreshed, or unreadable."""
    try:
        branch = json.loads((bundle_folder / CHECKED_OUT).read_text())["branch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return branch if isinstance(branch, str) else None


def entry_for(where: SlotFile, entries: list[previews.Entry], checked_out: str | None) -> previews.Entry:
    """The preview a slot's file belongs to; Refused when there is none or the slot moved on."""
    entry = previews.in_slot(entries, where.slot)
    if entry is None:
        raise Refused(
            f"preview slot {where.slot} holds no preview (the registry names none): its DAGs are not "
            "loaded; push a branch preview/<you>/<topic> to get one"
        )
    if where.tracking and checked_out != entry.branch:
        raise Refused(
            f"preview slot {where.slot} now holds {entry.branch}, but its bundle checked out "
            f"{checked_out or 'nothing'}: not loaded under either name; parsed again at its next refresh"
        )
    return entry


def registry_entries() -> list[previews.Entry]:
    """The registry Airflow's processes are given (MLOPS_IDE_PREVIEWS_FILE); ValueError when it
    is not set or not a registry."""
    path = os.environ.get(previews.ENV)
    if not path:
        raise ValueError(f"{previews.ENV} is not set: the platform gives Airflow the previews' registry")
    return previews.read(Path(path))


def preview_of(fileloc: str, storage_root: Path) -> previews.Entry | None:
    """The preview whose DAG `fileloc` defines, None for another bundle's; Refused otherwise."""
    where = slot_file(fileloc, storage_root)
    if where is None:
        return None
    try:
        entries = registry_entries()
    except ValueError as error:
        raise Refused(f"preview slot {where.slot}: {error}") from None
    return entry_for(where, entries, checked_out_branch(storage_root / where.slot))


def rename(dag, entry: previews.Entry) -> None:
    """The preview's id, tags and pause; its tasks' experiment."""
    try:
        dag.dag_id = entry.preview.dag_id(dag.dag_id)
    except previews.BadPreview as error:
        raise Refused(str(error)) from None
    dag.tags = {*(dag.tags or ()), entry.branch, f"by:{entry.pushed_by}"}
    dag.is_paused_upon_creation = True
    for task in dag.tasks:
        give_preview_environment(task, entry.preview.experiment)


def give_preview_environment(task, experiment: str) -> None:
    """Every task of a preview runs with the preview identity: a pre-execute hook (below) for
    all of them, and, for the runners whose containers get their environment explicitly,
    MLFLOW_EXPERIMENT_NAME and MLFLOW_TRACKING_TOKEN in it: DockerOperator's `environment` (a
    template), KubernetesPodOperator's `env_vars` (the token from the Secret
    POD_IDENTITY_SOURCE: a rendered value would show in the pod's spec). A mapped task holds
    them in its partial arguments."""
    give_preview_hook(task, experiment)
    kinds = {kind.__name__ for kind in type(task).__mro__}
    field = (
        "env_vars"
        if "KubernetesPodOperator" in kinds
        else "environment"
        if "DockerOperator" in kinds
        else None
    )
    if field is None and hasattr(task, "partial_kwargs"):  # a MappedOperator: its operator class
        operator = getattr(task, "operator_class", None)
        names = {kind.__name__ for kind in getattr(operator, "__mro__", ())}
        if "KubernetesPodOperator" in names:
            task.partial_kwargs["env_vars"] = with_preview_variables(
                task.partial_kwargs.get("env_vars"), experiment, in_pod="KubernetesPodOperator" in names
            )
        elif "DockerOperator" in names:
            task.partial_kwargs["environment"] = with_preview_variables(
                task.partial_kwargs.get("environment"), experiment
            )
        return
    if field is not None:
        in_pod = "KubernetesPodOperator" in kinds
        setattr(task, field, with_preview_variables(getattr(task, field, None), experiment, in_pod=in_pod))


def give_preview_hook(task, experiment: str) -> None:
    """The task's pre-execute hook becomes `enter_preview_identity`, then the author's own.
    The task runner parses the DAG file and runs this policy in the task's process, so the hook
    runs there before `execute`. Airflow stores the hook's source code with the DAG (no
    secret: the token is read when the task runs)."""
    if hasattr(task, "partial_kwargs"):  # a MappedOperator: its tasks get it when unmapped
        task.partial_kwargs["pre_execute"] = preview_hook(experiment, task.partial_kwargs.get("pre_execute"))
    else:
        task._pre_execute_hook = preview_hook(experiment, getattr(task, "_pre_execute_hook", None))


def preview_hook(experiment: str, authors):
    def use_preview_identity(context):  # stored as source by Airflow: keep it free of values
        enter_preview_identity(experiment, context.get("task"))
        if authors is not None:
            authors(context)

    return use_preview_identity


def enter_preview_identity(experiment: str, task=None) -> None:
    """In the task's process, before it runs: MLflow's client of this process (`@task`,
    PythonOperator, BashOperator's children...) uses the preview identity and experiment; so
    does an ExternalPythonOperator's interpreter (its environment is made at execute, from
    os.environ unless inherit_env is False, then its env_vars: given both here too). Refuses
    (the task fails) without the preview token: never the pipeline's."""
    kinds = {kind.__name__ for kind in type(task).__mro__}
    if "KubernetesPodOperator" in kinds:  # the pod's token comes from its Secret, not this process
        os.environ[EXPERIMENT_VARIABLE] = experiment
        return
    token = os.environ.get(PREVIEW_TOKEN_ENV) or airflow_variable(PREVIEW_TOKEN_NAME)
    if not token:
        raise RuntimeError(
            f"this preview's task cannot get the preview identity's MLflow token (Airflow's "
            f"Variable {PREVIEW_TOKEN_NAME}, {PREVIEW_TOKEN_ENV}): not run as the pipeline; "
            "the platform gives it to Airflow when MLflow runs, ask an admin"
        )
    added = {EXPERIMENT_VARIABLE: experiment, TOKEN_VARIABLE: token}
    os.environ.update(added)
    if "_BasePythonVirtualenvOperator" in kinds:  # after rendering: this process's copy only
        task.env_vars = {**(task.env_vars or {}), **added}


def airflow_variable(name: str) -> str | None:
    """Airflow's Variable `name` (from its secrets backends), None when it has none."""
    try:
        from airflow.sdk import Variable

        return Variable.get(name, default=None)
    except Exception:  # no Airflow, no API server: the caller refuses, saying what is missing
        return None


def with_preview_variables(current, experiment: str, in_pod: bool = False):
    """`current` (None, a dict or a list of V1EnvVar) with MLFLOW_EXPERIMENT_NAME=experiment and
    MLFLOW_TRACKING_TOKEN=TOKEN_TEMPLATE (replacing the pipeline's). For a pod (`in_pod`: a
    KubernetesPodOperator's env_vars) a list of V1EnvVar whose token is a secretKeyRef to
    POD_IDENTITY_SOURCE instead: Kubernetes reads it when the pod starts, so no value is in the
    pod's spec (the pipeline's Secret reference is replaced, not kept beside it)."""
    added = {EXPERIMENT_VARIABLE: experiment, TOKEN_VARIABLE: TOKEN_TEMPLATE}
    if (current is None or isinstance(current, dict)) and not in_pod:
        return {**(current or {}), **added}
    if current is None or isinstance(current, dict | list):
        from kubernetes.client import models as k8s

        if not isinstance(current, list):  # a pod's dict: the list KubernetesPodOperator makes of it
            current = [k8s.V1EnvVar(name=name, value=value) for name, value in (current or {}).items()]
        kept = [item for item in current if getattr(item, "name", None) not in added]
        if not in_pod:
            return [*kept, *(k8s.V1EnvVar(name=name, value=value) for name, value in added.items())]
        secret = k8s.V1SecretKeySelector(name=POD_IDENTITY_SOURCE, key=POD_IDENTITY_KEY)
        return [
            *kept,
            k8s.V1EnvVar(name=EXPERIMENT_VARIABLE, value=experiment),
            k8s.V1EnvVar(name=TOKEN_VARIABLE, value_from=k8s.V1EnvVarSource(secret_key_ref=secret)),
        ]
    raise Refused(
        f"cannot give {EXPERIMENT_VARIABLE} to a task whose environment is a {type(current).__name__}"
    )


def dag_policy(dag) -> None:
    """Airflow's hook (airflow_local_settings.dag_policy)."""
    from airflow.dag_processing.bundles.base import get_bundle_storage_root_path
    from airflow.exceptions import AirflowClusterPolicyViolation

    try:
        entry = preview_of(dag.fileloc, get_bundle_storage_root_path())
        if entry is not None:
            rename(dag, entry)
    except Refused as error:
        raise AirflowClusterPolicyViolation(str(error)) from None
