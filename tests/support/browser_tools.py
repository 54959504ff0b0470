"""Headless Chromium (Debian's) for the browser tests: how to start it here, and how a
person logs in to the hub. The `browser` fixture is in conftest.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.support.local_platform import ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Page

    from tests.support.local_platform import RunningPlatform

CHROMIUM = "/usr/bin/chromium"
# Without these, Chromium keeps trying to reach the network this machine does not have.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ARTIFACTS = ROOT / "test-artifacts"


def log_in(page: Page, platform: RunningPlatform, username: str) -> None:
    page.goto(f"{platform.url}/hub/login")
    page.fill("#username_input", username)
    page.fill("#password_input", platform.password_of(username))
    page.click("#login_submit")


def explorer_entries(page: Page) -> list[str]:
    """The names VS Code's explorer lists, once it lists any (the workbench is up)."""
    rows = page.locator(".explorer-folders-view .monaco-list-row")
    rows.first.wait_for(timeout=60_000)
    return [text.strip() for text in rows.all_inner_texts()]
