"""The settings table is the one place: every MLOPS_IDE_* name the project reads is a row,
the docs' tables are made from the rows, and deploy/settings.env sets only rows."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from mlops_ide.hub.modes import load
from mlops_ide.machine.state.tools import TOOLS_FILE_KEYS
from mlops_ide.settings import Invalid, Setting, SettingsError, docs, read, table
from tests.support.local_platform import ROOT

NAME = re.compile(r"\b(?:MLOPS_IDE_[A-Z0-9_]*[A-Z0-9]|JUPYTERHUB_CRYPT_KEY|CONFIGPROXY_AUTH_TOKEN)\b")
# What the hub and its helpers read or set: source, images, manifests, scripts, CI.
READERS = (
    "src",
    "startup",
    "dags",
    "images",
    "deploy",
    "scripts",
    "bench",
    ".github",
    "jupyterhub_config.py",
)


def names_in_the_project() -> dict[str, set[str]]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *READERS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    found: dict[str, set[str]] = {}
    for path in listed:
        if (ROOT / path).is_file() and not path.endswith(".md"):
            for name in NAME.findall((ROOT / path).read_text(errors="replace")):
                found.setdefault(name, set()).add(path)
    return found


def test_every_variable_the_project_reads_is_declared_once() -> None:
    rows = [row.name for row in table.rows()]
    assert len(rows) == len(set(rows)), "a variable is declared twice"
    test_tools = {"MLOPS_IDE_SCANNERS_PYTHON"}  # .tools.env line of `scripts/install.sh test` only
    known = {*rows, *TOOLS_FILE_KEYS.values(), *test_tools, "AIRFLOW_CONN_MLOPS_IDE_PIPELINES"}

    undeclared = {name: sorted(paths) for name, paths in names_in_the_project().items() if name not in known}

    assert undeclared == {}


def test_every_row_has_help_and_a_parsable_default() -> None:
    for row in table.rows():
        assert row.help.strip(), row.name
        for mode in row.modes:
            if isinstance(row.default, str) and row.reader(mode) == "hub":
                row.parse(row.default)  # raises Invalid for a default that would be refused
            assert row.documented_default(mode), row.name


def test_the_docs_tables_are_made_from_the_rows() -> None:
    for mode, page in docs.PAGES.items():
        text = page.read_text()
        assert docs.render(mode, text) == text, f"{page.name}: run `python -m mlops_ide.settings.docs`"
        for row in table.rows():
            assert (f"| `{row.name}` |" in text) == (mode in row.modes), (page.name, row.name)


def test_a_stale_docs_table_is_found_and_rewritten(tmp_path: Path) -> None:
    page = "intro\n<!-- settings:local -->\n| old |\n<!-- /settings -->\nrest\n"

    fresh = docs.render("local", page)

    assert fresh.startswith("intro\n<!-- settings:local -->\n| variable |") and fresh.endswith("rest\n")
    assert "| old |" not in fresh and "`MLOPS_IDE_PORT`" in fresh
    with pytest.raises(ValueError, match="markers"):
        docs.render("kubernetes", page)


def test_deploy_settings_env_sets_only_kubernetes_rows_and_every_required_one() -> None:
    rows = {row.name: row for row in table.rows()}
    assigned = {
        line.split("=", 1)[0]
        for line in (ROOT / "deploy" / "settings.env").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }

    assert {name for name in assigned if name not in rows or "kubernetes" not in rows[name].modes} == set()
    assert not [name for name in assigned if rows[name].secret], (
        "secrets come from Secrets, not the ConfigMap"
    )
    required = {
        name
        for name, row in rows.items()
        if row.needed_in("kubernetes") and not row.secret and row.default is None
    }
    assert required <= assigned


def test_a_default_may_follow_an_earlier_row() -> None:
    rows = (
        Setting("T_PORT", "port", "a port", default="8000", parse=int),
        Setting("T_URL", "url", "from the port", default=lambda v: f"http://h:{v['port']}"),
    )

    assert read(rows, "local", environ={"T_PORT": "9"}).url == "http://h:9"


def test_a_secret_is_never_echoed_in_a_problem() -> None:
    def refuse(raw: str) -> str:
        raise Invalid("is too short: set a longer one.")

    rows = (Setting("T_SECRET", "secret", "a secret", parse=refuse, secret=True),)

    with pytest.raises(SettingsError) as error:
        read(rows, "local", environ={"T_SECRET": "hunter2-value"})
    assert str(error.value) == "T_SECRET is too short: set a longer one."


def test_a_setting_of_the_other_mode_is_refused_where_it_contradicts() -> None:
    with pytest.raises(SettingsError, match="MLOPS_IDE_PASSWORD is set, but kubernetes mode logs users in"):
        load({"MLOPS_IDE_MODE": "kubernetes", "MLOPS_IDE_PASSWORD": "a-long-password"})


def test_settings_cannot_be_changed_after_they_are_read() -> None:
    settings = load({})

    with pytest.raises(AttributeError, match="read once"):
        settings.port = 1
    assert settings.replace(port=9000).port == 9000 and settings.port == 8000


def test_settings_can_be_copied_and_pickled() -> None:
    import copy
    import pickle

    settings = load({"MLOPS_IDE_PORT": "9000"})

    assert copy.deepcopy(settings).port == 9000 and pickle.loads(pickle.dumps(settings)).hub_port == 9001


def test_a_value_that_failed_is_not_reported_again_by_a_rule(tmp_path: Path) -> None:
    from tests.support.kubernetes_hub_tools import kubernetes_env

    with pytest.raises(SettingsError) as error:
        load(kubernetes_env(tmp_path, MLOPS_IDE_GITHUB_ALLOWED_ORGS="not an org!"))

    assert str(error.value).splitlines() == [
        "MLOPS_IDE_GITHUB_ALLOWED_ORGS has entries that are not 'org' or 'org:team' (not an org!): "
        "list GitHub organizations or organization:team-slug, separated by commas."
    ]


def test_a_secret_is_taken_as_it_is() -> None:
    assert load({"MLOPS_IDE_PASSWORD": "  spaced out  "}).password == "  spaced out  "
    assert load({"MLOPS_IDE_REPO_BRANCH": " main "}).repo_branch == "main"


def test_local_mode_puts_the_hub_api_next_to_the_public_port() -> None:
    settings = load({"MLOPS_IDE_PORT": "9000", "MLOPS_IDE_HUB_PORT": "7000"})  # a kubernetes setting

    assert settings.hub_port == 9001


def test_the_operators_config_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(
        SettingsError, match=r"MLOPS_IDE_HUB_CONFIG_DIR=.* is not a folder: set it to the folder"
    ):
        load({"MLOPS_IDE_HUB_CONFIG_DIR": str(tmp_path / "missing")})
