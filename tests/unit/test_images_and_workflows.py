"""Images and GitHub workflows, checked without Docker or GitHub: hadolint and actionlint
(both shipped in their wheels), and the rules we hold them to."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.local_platform import ROOT

BIN = Path(sys.executable).parent
DOCKERFILES = sorted((ROOT / "images").glob("*/Dockerfile"))
INSTALL_SCRIPT = (ROOT / "scripts" / "install.sh").read_text()


def test_there_are_images() -> None:
    assert {path.parent.name for path in DOCKERFILES} == {
        "singleuser",
        "hub",
        "pipeline",
        "serving",
        "app",
        "airflow",
    }


def copy_sources(dockerfile: Path) -> list[str]:
    """What each COPY of the build context names (not --from another stage), continued lines joined."""
    text = dockerfile.read_text().replace("\\\n", " ")
    sources = []
    for line in re.findall(r"^COPY\s+(.+)$", text, re.MULTILINE):
        words = [word for word in line.split() if not word.startswith("--")]
        if "--from" not in line:
            sources += words[:-1]
    return sources


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_what_an_image_copies_is_in_the_checkout(dockerfile: Path) -> None:
    sources = copy_sources(dockerfile)

    assert sources
    assert [source for source in sources if not (ROOT / source).exists()] == []


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_an_image_copies_our_code_by_folder(dockerfile: Path) -> None:
    """Of the platform's package an image takes whole folders (where that code runs), and
    single files only at the package's root (its __init__, the auth manager's old path)."""
    ours = [source for source in copy_sources(dockerfile) if source.startswith("src/mlops_ide/")]

    assert [source for source in ours if source.endswith(".py") and source.count("/") > 2] == []


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_image_bakes_in_no_secrets(dockerfile: Path) -> None:
    settings = re.findall(r"^(?:ENV|ARG)\s+(.+)$", dockerfile.read_text(), re.MULTILINE)

    assert not [
        line for line in settings if re.search(r"TOKEN|SECRET|PASSWORD|CRYPT_KEY", line, re.IGNORECASE)
    ]


def test_singleuser_image_runs_the_start_hook_and_the_local_code_server_version() -> None:
    text = (ROOT / "images" / "singleuser" / "Dockerfile").read_text()
    local_version = re.search(r"^CODE_SERVER_VERSION=(\S+)$", INSTALL_SCRIPT, re.MULTILINE).group(1)

    assert f"ARG CODE_SERVER_VERSION={local_version}\n" in text
    assert "COPY images/singleuser/mlops-ide-start-hook.sh /usr/local/bin/before-notebook.d/" in text
    assert re.search(r"^FROM quay\.io/jupyter/base-notebook:\d{4}-\d{2}-\d{2}$", text, re.MULTILINE)
    assert "postStart" not in text and "COPY startup /opt/mlops-ide/startup" in text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = subprocess.run([str(BIN / "hadolint"), str(dockerfile)], capture_output=True, text=True)

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_image_pins_its_base_and_runs_as_a_non_root_user(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)

    assert bases and all(re.search(r":\S*\d", base) and not base.endswith(":latest") for base in bases), bases
    assert users and users[-1] not in ("root", "0"), users


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_image_installs_the_requirements_the_local_platform_uses(dockerfile: Path) -> None:
    installed = re.findall(r"-r (requirements/[\w-]+\.txt)", dockerfile.read_text())

    assert installed, "an image installs its Python packages from a requirements file"
    for name in installed:
        assert (ROOT / name).is_file()
        assert f'"$here/{name}"' in INSTALL_SCRIPT, f"{name} is not what a local virtualenv is made from"
        if dockerfile.parent.name != "singleuser":  # where data scientists run the pipeline's tests
            assert "pytest" not in (ROOT / name).read_text(), f"{name} carries test tools into the image"


WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml")) + sorted(
    (ROOT / "pipeline-repo" / ".github" / "workflows").glob("*.yml")  # the pipeline repository's CI
)


def test_workflows_pass_actionlint() -> None:
    files = [str(path.relative_to(ROOT)) for path in WORKFLOWS]
    result = subprocess.run([str(BIN / "actionlint"), *files], cwd=ROOT, capture_output=True, text=True)

    assert result.returncode == 0, result.stdout + result.stderr


def test_ci_workflow_runs_the_readme_test_command() -> None:
    readme_command = re.search(r"^make test\b", (ROOT / "README.md").read_text(), re.MULTILINE)
    ci_run = (ROOT / ".ci" / "run").read_text()
    workflow = (ROOT / ".github" / "workflows" / "ci.yml").read_text()

    assert readme_command is not None
    assert re.search(r"^make test\b", ci_run, re.MULTILINE)
    assert re.search(r"run: bash \.ci/run$", workflow, re.MULTILINE)
    assert "permissions:\n  contents: read" in workflow


def test_ci_checks_the_dags_of_every_push_and_pull_request_as_the_local_remote_does() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as True
    job = workflow["jobs"]["dag-check"]
    commands = [step.get("run", "") for step in job["steps"]]

    assert "pull_request" in triggers and "push" in triggers
    assert "python -m pip install -r requirements/airflow.txt" in commands  # Airflow as the platform runs it
    assert "python src/mlops_ide/portable/dag_check.py dags --problems" in commands


def test_the_pipeline_repositorys_ci_checks_its_dags_runs_its_tests_and_builds_its_image() -> None:
    workflow = yaml.safe_load((ROOT / "pipeline-repo" / ".github" / "workflows" / "ci.yml").read_text())
    jobs = workflow["jobs"]
    runs = {name: [step.get("run", "") for step in job["steps"]] for name, job in jobs.items()}
    build = next(step for step in jobs["image"]["steps"] if "build-push-action" in step.get("uses", ""))

    assert "python ci/dag_check.py dags --problems" in runs["dag-check"]  # pipeline_repo copies it there
    assert "python -m pytest" in runs["test"]
    assert build["with"]["file"] == "Dockerfile" and build["with"]["context"] == "."
    assert build["with"]["push"] == "${{ github.event_name != 'pull_request' }}"
    assert set(jobs["image"]["needs"]) == {"dag-check", "test"}
    assert workflow["permissions"] == {"contents": "read"}


def test_images_workflow_builds_every_image_and_pushes_only_from_main_and_tags() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "images.yml").read_text())
    job = workflow["jobs"]["build"]
    steps = {step.get("name") or step["uses"].split("@")[0]: step for step in job["steps"]}
    triggers = workflow[True]  # YAML reads the key `on` as True

    assert set(job["strategy"]["matrix"]["image"]) == {path.parent.name for path in DOCKERFILES}
    assert triggers["push"] == {"branches": ["main"], "tags": ["v*"]} and "pull_request" in triggers
    build = steps["Build (and push outside pull requests)"]["with"]
    assert build["push"] == "${{ github.event_name != 'pull_request' }}"
    assert build["file"] == "images/${{ matrix.image }}/Dockerfile"
    assert steps["Log in to GHCR"]["if"] == "github.event_name != 'pull_request'"
    tags = steps["Image name and tags"]["with"]
    assert "type=sha" in tags["tags"] and "type=semver" in tags["tags"] and tags["flavor"] == "latest=false"
    # least privilege: read-only by default, package writes only in the build job
    assert workflow["permissions"] == {"contents": "read"}
    assert job["permissions"] == {"contents": "read", "packages": "write"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: str(p.relative_to(ROOT)))
def test_workflow_actions_are_pinned_to_commits_and_checkout_keeps_no_token(workflow: Path) -> None:
    """A tag can be moved to other code; a commit cannot. The version stays in a comment,
    which Dependabot updates with the SHA."""
    text = workflow.read_text()
    uses = re.findall(r"uses: (.+)", text)

    assert uses and all(
        re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}  # v\d+\.\d+\.\d+", action) for action in uses
    ), uses
    steps = [step for job in yaml.safe_load(text)["jobs"].values() for step in job["steps"]]
    checkouts = [step for step in steps if step.get("uses", "").startswith("actions/checkout@")]
    assert checkouts and all(step["with"]["persist-credentials"] is False for step in checkouts)


def test_pre_commit_runs_the_same_linters_as_make_test() -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())["repos"][0]["hooks"]
    requirements = (ROOT / "requirements" / "test.txt").read_text() + (
        ROOT / "requirements" / "scanners.txt"
    ).read_text()
    pinned = set(re.findall(r"^([\w-]+==\S+)$", requirements, re.MULTILINE))

    assert {hook["id"] for hook in hooks} == {
        "ruff-check",
        "ruff-format",
        "hadolint",
        "actionlint",
        "security-scanners",
    }
    for hook in hooks:
        assert set(hook["additional_dependencies"]) <= pinned, hook["id"]
