from __future__ import annotations

import importlib.util
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.gitrepos import Remote

if TYPE_CHECKING:  # the pipeline's and the app's virtualenvs run these tests too, without requests
    from tests.support.local_platform import RunningPlatform

# tests/pipeline run in the pipeline's own virtualenv (Keras, PyTorch): `make test` runs
# them there; any other virtualenv leaves them out.
# tests/app likewise in the app's (Streamlit).
collect_ignore = [
    name
    for name, module in (("pipeline", "keras"), ("app", "streamlit"))
    if not importlib.util.find_spec(module)
]


PLATFORM_TESTS = Path(__file__).parent / "platform"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of tests/platform/ is marked `platform` (`-m "not platform"`: the fast ones)."""
    for item in items:
        if item.path.is_relative_to(PLATFORM_TESTS):
            item.add_marker(pytest.mark.platform)


def pytest_configure(config: pytest.Config) -> None:
    """As root the platform gives each user an OS account, which must pass through the test
    folders to their home; pytest resets its shared /tmp/pytest-of-root to 0700 whenever a
    session starts, so each session gets a folder of its own."""
    if os.geteuid() == 0 and not config.option.basetemp:
        config.option.basetemp = tempfile.mkdtemp(prefix="mlops-ide-tests-")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's home with its own global git config, so tests never read or write ours."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in (
        "MLOPS_IDE_GIT_TOKEN",
        "MLOPS_IDE_GIT_TOKEN_FILE",
        "MLOPS_IDE_REPO_URL",
        "MLOPS_IDE_REPO_BRANCH",
        "GIT_DIR",
        "GIT_WORK_TREE",
    ):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def remote(tmp_path: Path, home: Path) -> Remote:
    return Remote(tmp_path)


@pytest.fixture
def silent_port() -> int:
    """A port that accepts connections and never answers: a remote that hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for a module's browser tests (Playwright is in the hub's virtualenv only)."""
    from playwright.sync_api import sync_playwright

    from tests.support.browser_tools import CHROMIUM, CHROMIUM_ARGS

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def platform(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningPlatform]:
    """The real platform (`make up`) for the test module that asks for it, started as the
    module's `PLATFORM` (a PlatformConfig) says, or with the defaults; one per module."""
    from tests.support.local_platform import PlatformConfig, started_platform

    config = getattr(request.module, "PLATFORM", PlatformConfig(request.module.__name__.rpartition(".")[2]))
    with started_platform(config, tmp_path_factory.mktemp(config.name)) as running:
        yield running
