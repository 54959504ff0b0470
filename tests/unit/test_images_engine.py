"""How `make images` drives the engine, without the engine (these run in `make test`;
tests/platform/test_images.py builds and runs the images for real)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from mlops_ide.supervisor import images

ROOT = Path(__file__).resolve().parents[2]


def test_every_dockerfile_is_either_built_here_or_says_why_not() -> None:
    names = {path.parent.name for path in (ROOT / "images").glob("*/Dockerfile")}

    assert names == set(images.BUILDABLE) | set(images.NOT_BUILDABLE)
    assert not set(images.BUILDABLE) & set(images.NOT_BUILDABLE)


def test_the_images_built_here_stand_on_the_official_python_image_the_stand_in_replaces() -> None:
    for name in images.BUILDABLE:
        (base,) = images.bases_of(images.dockerfile_of(name))
        assert base.startswith(images.STAND_IN_PYTHON_BASE), name
    assert images.python_bases() == ["python:3.11.14-slim-bookworm"]


def test_a_short_from_names_what_podman_resolves_it_to() -> None:
    assert (
        images.official_name("python:3.11.14-slim-bookworm")
        == "docker.io/library/python:3.11.14-slim-bookworm"
    )
    assert images.official_name("apache/airflow:3.3.2") == "docker.io/apache/airflow:3.3.2"
    assert images.official_name("quay.io/jupyter/base-notebook:x") == "quay.io/jupyter/base-notebook:x"


def test_a_build_uses_the_repository_as_context_never_pulls_and_mounts_the_wheels(tmp_path: Path) -> None:
    command = images.build_command("serving", tmp_path)

    assert command[-1] == str(ROOT)  # as .github/workflows/images.yml: context ".", file images/<name>
    assert command[command.index("-f") + 1] == str(ROOT / "images" / "serving" / "Dockerfile")
    assert command[command.index("-t") + 1] == "localhost/mlops-ide-serving:local"
    assert "--pull=never" in command
    assert command[command.index("--volume") + 1] == f"{tmp_path}:/wheels:ro"
    assert "--volume" not in images.build_command("serving", None)


def test_the_engine_reads_our_configuration_not_the_machines() -> None:
    env = images.engine_env()
    conf = tomllib.loads(Path(env["CONTAINERS_CONF"]).read_text())
    storage = tomllib.loads(Path(env["CONTAINERS_STORAGE_CONF"]).read_text())

    assert conf["engine"]["runtime"] == "runc"
    assert conf["engine"]["runtimes"]["runc"] == ["/usr/sbin/runc"]
    assert conf["containers"]["default_ulimits"] == ["nofile=1024:1024", "nproc=1024:1024"]
    assert not storage["storage"]["graphroot"].startswith("/var/lib/containers")


def test_the_stand_in_recipe_changes_with_its_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    before = images.stand_in_recipe()
    monkeypatch.setattr(images, "STAND_IN_PACKAGES", (*images.STAND_IN_PACKAGES, "git"))

    assert images.stand_in_recipe() != before


def test_a_missing_engine_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images.shutil, "which", lambda name: None)

    with pytest.raises(images.ImagesError) as missing:
        images.find_tool("podman")

    assert str(missing.value) == (
        "`podman` is missing: run `make images` (or `bash scripts/install.sh images`, which installs "
        "Debian's podman, runc and mmdebstrap)"
    )


def test_the_command_line_names_a_missing_engine_and_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(images.shutil, "which", lambda name: None)
    monkeypatch.setattr(images.os, "geteuid", lambda: 0)

    assert images.main(["build", "hub"]) == 1
    assert "`podman` is missing: run `make images`" in capsys.readouterr().err


def test_an_image_that_cannot_be_built_here_says_why() -> None:
    with pytest.raises(
        images.ImagesError, match="`singleuser` cannot be built here: stands on docker-stacks"
    ):
        images.build(["singleuser"])
