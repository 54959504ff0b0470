"""Settings are read and validated in one place; every problem names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_ide.hub.modes import load
from mlops_ide.machine.components import airflow
from mlops_ide.machine.state.credentials import ensure_password
from mlops_ide.machine.state.layout import StateError
from mlops_ide.machine.state.remote import ensure_local_remote
from mlops_ide.portable import pipeline_repo
from mlops_ide.settings import CHECKOUT, SettingsError
from tests.support.gitrepos import git


def test_defaults_describe_one_machine() -> None:
    settings = load({})

    assert (settings.mode, settings.ip, settings.port) == ("local", "127.0.0.1", 8000)
    assert (settings.hub_port, settings.proxy_api_port) == (8001, 8002)
    assert settings.home == CHECKOUT / ".mlops-ide"
    assert settings.admin_users == ("admin",)
    assert settings.effective_repo_url == str(CHECKOUT / ".mlops-ide" / "remote" / "pipelines.git")
    assert settings.repo_branch == "main"
    assert (settings.airflow_port, settings.mlflow_port) == (8080, 5000)
    assert settings.public_url == "http://127.0.0.1:8000/"


def test_values_are_read_from_the_environment(tmp_path: Path) -> None:
    settings = load(
        {
            "MLOPS_IDE_HOME": str(tmp_path),
            "MLOPS_IDE_IP": "0.0.0.0",
            "MLOPS_IDE_ALLOW_HTTP": "1",
            "MLOPS_IDE_PORT": "9000",
            "MLOPS_IDE_ADMIN_USERS": "Ana, ben ",
            "MLOPS_IDE_REPO_URL": "https://github.com/team/pipelines.git",
            "MLOPS_IDE_REPO_BRANCH": "release/1.0",
            "MLOPS_IDE_PASSWORD": "correct horse",
        }
    )

    assert settings.home == tmp_path and settings.port == 9000
    assert settings.admin_users == ("ana", "ben")
    assert settings.effective_repo_url == "https://github.com/team/pipelines.git"
    assert settings.repo_branch == "release/1.0"
    assert settings.password == "correct horse"


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("MLOPS_IDE_MODE", "cloud", "MLOPS_IDE_MODE='cloud' is not a mode"),
        ("MLOPS_IDE_PORT", "80a", "MLOPS_IDE_PORT='80a' is not a port"),
        ("MLOPS_IDE_PORT", "70000", "MLOPS_IDE_PORT='70000' is not a port"),
        ("MLOPS_IDE_PORT", "65535", "leaves no room for the hub's two internal ports"),
        ("MLOPS_IDE_AIRFLOW_PORT", "0", "MLOPS_IDE_AIRFLOW_PORT='0' is not a port"),
        ("MLOPS_IDE_IP", "my-laptop", "MLOPS_IDE_IP='my-laptop' is not an IP address"),
        ("MLOPS_IDE_PASSWORD", "short", "MLOPS_IDE_PASSWORD is shorter than 8 characters"),
        (
            "MLOPS_IDE_ADMIN_USERS",
            "ok,bad name",
            "MLOPS_IDE_ADMIN_USERS has names that are not usernames (bad name)",
        ),
        (
            "MLOPS_IDE_REPO_BRANCH",
            "two..dots",
            "MLOPS_IDE_REPO_BRANCH='two..dots' is not a valid git branch name",
        ),
        (
            "MLOPS_IDE_REPO_URL",
            "https://me:s3cr3t@github.com/t/p.git",
            "MLOPS_IDE_REPO_URL contains a password",
        ),
        (
            "MLOPS_IDE_REPO_URL",
            "https://s3cr3t@github.com/t/p.git",
            "MLOPS_IDE_REPO_URL contains a password or token",
        ),
        (
            "MLOPS_IDE_GIT_TOKEN_FILE",
            "/no/such/token",
            "MLOPS_IDE_GIT_TOKEN_FILE='/no/such/token' is not a file",
        ),
    ],
)
def test_a_bad_value_is_named_with_what_to_set(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        load({name: value})

    assert message in str(error.value)
    assert "s3cr3t" not in str(error.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        load({"MLOPS_IDE_PORT": "x", "MLOPS_IDE_IP": "y", "MLOPS_IDE_MODE": "z"})

    assert len(str(error.value).splitlines()) == 3


def test_home_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "state").write_text("")

    with pytest.raises(SettingsError, match=r"MLOPS_IDE_HOME=.* is a file"):
        load({"MLOPS_IDE_HOME": str(tmp_path / "state")})


def test_an_ssh_url_with_its_user_is_accepted() -> None:
    assert (
        load({"MLOPS_IDE_REPO_URL": "ssh://git@github.com/t/p.git"}).repo_url
        == "ssh://git@github.com/t/p.git"
    )


def test_git_token_settings_go_to_airflows_bundle(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("t\n")
    url = "https://git.example.org/team/pipelines.git"

    settings = load(
        {
            "MLOPS_IDE_REPO_URL": url,
            "MLOPS_IDE_GIT_TOKEN_FILE": str(token_file),
            "MLOPS_IDE_GIT_USERNAME": "bot",
        }
    )

    assert airflow.git_connection(settings) == {
        "conn_type": "git",
        "host": url,
        "login": "bot",
        "password": "t",
    }


# -- the state folder ---------------------------------------------------------------------------


def test_generated_password_is_made_once_and_kept_0600(tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path)})

    first, made = ensure_password(settings)
    again, made_again = ensure_password(settings)

    assert made and not made_again and first == again and len(first) >= 16
    assert (tmp_path / "password").stat().st_mode & 0o777 == 0o600


def test_password_from_the_setting_is_not_stored(tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path), "MLOPS_IDE_PASSWORD": "from-the-env"})

    assert ensure_password(settings) == ("from-the-env", False)
    assert not (tmp_path / "password").exists()


def empty_commit(repo: Path, message: str) -> None:
    git(
        repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "--allow-empty", "-m", message
    )


def test_local_remote_is_seeded_with_the_pipeline_repository_once_then_kept(tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})

    remote, how = ensure_local_remote(settings, CHECKOUT)
    assert how.startswith("seeded with the pipeline repository ")
    seeded_tree = git(remote, "rev-parse", "main^{tree}")
    assert seeded_tree == git(CHECKOUT, "rev-parse", f"{pipeline_repo.commit(CHECKOUT)}^{{tree}}")
    assert git(remote, "symbolic-ref", "HEAD") == "refs/heads/main"

    _, how = ensure_local_remote(settings, CHECKOUT)
    assert how == "kept"
    assert git(remote, "rev-parse", "main^{tree}") == seeded_tree


def test_checkout_without_commits_cannot_seed_the_remote(tmp_path: Path) -> None:
    git(tmp_path, "init", "--quiet")
    settings = load({"MLOPS_IDE_HOME": str(tmp_path / "state")})

    with pytest.raises(StateError, match="commit first"):
        ensure_local_remote(settings, tmp_path)
    assert not settings.local_remote.exists()


def test_the_home_page_links_only_the_services_that_run() -> None:
    from mlops_ide.machine.components import links as service_links

    links = service_links(load({"MLOPS_IDE_SERVICES": "mlflow,app", "MLOPS_IDE_APP_PORT": "9501"}))

    assert links == {
        "MLflow": (  # via the hub, in its classic mode
            "/services/mlflow/#/experiments?workflowType=machine_learning",
            "http://127.0.0.1:5000/services/mlflow/health",
        ),
        "App": ("http://127.0.0.1:9501/", "http://127.0.0.1:9501/_stcore/health"),
    }
    assert service_links(load({"MLOPS_IDE_SERVICES": "none"})) == {}
