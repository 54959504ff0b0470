"""What a person sees, in headless Chromium (Debian's) driven by Playwright.
Few and sharp: each costs a browser and a code-server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from mlops_ide.processes import descendants, is_alive
from tests.support.browser_tools import ARTIFACTS, explorer_entries, log_in
from tests.support.gitrepos import git
from tests.support.local_platform import PlatformConfig, RunningPlatform

pytestmark = pytest.mark.browser


PLATFORM = PlatformConfig("browser", {"MLOPS_IDE_SERVICES": "mlflow"})


def test_login_shows_the_workbench_with_the_repository_in_the_explorer(
    browser: Browser, platform: RunningPlatform
) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 900})

    log_in(page, platform, "carol")
    page.wait_for_selector(".monaco-workbench", timeout=90_000)
    entries = explorer_entries(page)

    clone = platform.home / "homes" / "carol" / "pipelines"
    top_level = set(git(clone, "ls-tree", "--name-only", "HEAD").splitlines())
    assert "dags" in entries and set(entries) <= top_level, entries  # the pipeline repository
    # Trusted, quiet and offline: no editor open (no welcome page), no trust dialog, no chat.
    assert page.locator(".tabs-container .tab").count() == 0
    assert page.get_by_text("Do you trust the authors").count() == 0
    assert page.locator(".interactive-session").count() == 0
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "vscode-workbench.png"))
    page.close()


def test_one_login_opens_mlflow_too(browser: Browser, platform: RunningPlatform) -> None:
    """MLflow behind the hub: the hub's login is enough (no second login, no consent page);
    without it, the hub's login page."""
    page = browser.new_page()
    page.goto(f"{platform.url}/services/mlflow/")
    page.wait_for_selector("#username_input", timeout=30_000)  # anonymous: the hub's login
    log_in(page, platform, "gina")  # not erin: her OS account serves another platform below
    page.wait_for_selector(".monaco-workbench", timeout=90_000)

    page.goto(f"{platform.url}/services/mlflow/")
    page.wait_for_function("() => document.title.includes('MLflow')", timeout=60_000)
    # MLflow's app drew itself from its API (through the gate, with the login cookie)
    page.wait_for_function("() => document.querySelectorAll('#root *').length > 50", timeout=60_000)

    assert page.url.startswith(f"{platform.url}/services/mlflow/")
    assert page.locator("#username_input").count() == 0
    page.screenshot(path=str(ARTIFACTS / "mlflow.png"))
    page.close()


def test_home_page_shows_each_tool_healthy(browser: Browser, platform: RunningPlatform) -> None:
    page = browser.new_page()
    log_in(page, platform, "dave")
    page.wait_for_selector(".monaco-workbench", timeout=90_000)

    page.goto(f"{platform.url}/hub/home")
    badges = page.locator(".tool-health")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.tool-health')]"
        ".every(b => b.textContent.trim() !== 'checking…')",
        timeout=30_000,
    )

    assert badges.all_inner_texts() == ["healthy", "healthy", "healthy"]  # VS Code, JupyterLab, MLflow
    page.screenshot(path=str(ARTIFACTS / "hub-home.png"))
    page.close()


def test_stopping_with_a_workbench_open_leaves_no_process(browser: Browser, tmp_path: Path) -> None:
    platform = RunningPlatform(tmp_path / "state").start()
    page = browser.new_page()
    log_in(page, platform, "erin")
    page.wait_for_selector(".monaco-workbench", timeout=90_000)
    explorer_entries(page)  # the extension host and file watcher are up by now
    started = descendants(platform.proc.pid)

    assert platform.stop() == 0

    deadline = time.monotonic() + 10
    while [pid for pid in started if is_alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [pid for pid in started if is_alive(pid)] == []
    page.close()
