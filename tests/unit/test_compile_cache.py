"""code-server's compile cache (mlops_ide.machine.state.compile_cache): filled once by the
platform's account, read by another account's real code-server through a link, written
by nobody else."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_ide.hub.modes import load
from mlops_ide.machine.state import compile_cache
from mlops_ide.machine.state.tools import Tools, write_code_server_shim

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="another account's code-server needs root")

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture(scope="module")
def tools() -> Tools:
    return Tools.load()


@pytest.fixture(scope="module")
def shared() -> Iterator[Path]:
    """A folder every account can pass through (pytest's own is root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="mlops-ide-compile-cache-test-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


@pytest.fixture(scope="module")
def cache(tools: Tools, shared: Path) -> Path:
    folder = shared / "compile-cache"
    assert compile_cache.fill(tools.node24, tools.code_server, folder)
    return folder


def code_server_as_nobody(tools: Tools, cache: Path, place: Path) -> str:
    """Start code-server as another account with `cache`, until it serves its workbench;
    what Node said about the cache."""
    place.mkdir(mode=0o777)
    place.chmod(0o777)
    log = place / "log"
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(place),
        compile_cache.VARIABLE: str(cache),
        "NODE_DEBUG_NATIVE": "COMPILE_CACHE",
        "CODE_SERVER_CONFIG": str(place / "config.yaml"),
    }
    sock = place / "sock"
    argv = [*AS_NOBODY, *compile_cache.code_server_command(tools.node24, tools.code_server, sock, place)]
    with open(log, "wb") as output:
        process = subprocess.Popen(argv, env=env, stdout=output, stderr=output, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not compile_cache.workbench_served(sock, place):
            assert process.poll() is None, log.read_text(errors="replace")[-2000:]
            assert time.monotonic() < deadline, "code-server did not serve its workbench in 60 s"
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(15)
    return log.read_text(errors="replace")


def accepted(said: str, name: str) -> bool:
    return any(name in line and "was accepted" in line for line in said.splitlines())


def test_another_accounts_code_server_reads_what_the_platform_compiled(
    tools: Tools, cache: Path, shared: Path
) -> None:
    compile_cache.share_with(cache, NOBODY)

    said = code_server_as_nobody(tools, cache, shared / "with-link")

    assert accepted(said, "out/node/entry.js")  # code-server's own process
    assert accepted(said, "server-main.js")  # VS Code's server, in its child process


def test_an_account_it_was_not_shared_with_compiles_as_before_and_writes_nothing(
    tools: Tools, cache: Path, shared: Path
) -> None:
    uid = NOBODY - 1  # nogroup's id as a user: no link for it
    before = sorted(p.name for p in cache.iterdir())
    assert not any(name.endswith(f"-{uid}") for name in before)
    as_other = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    place = shared / "without-link"
    place.mkdir(mode=0o777)
    place.chmod(0o777)

    ran = subprocess.run(
        [*as_other, str(tools.node24), "-e", f"require({str(tools.code_server.parent / 'cli')!r})"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(place), compile_cache.VARIABLE: str(cache)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert ran.returncode == 0 and ran.stderr == "", ran.stderr  # no error, no warning
    assert sorted(p.name for p in cache.iterdir()) == before


# exit 3 when it could neither write to nor (where it exists) remove $0
WRITE_OR_REMOVE = (
    'echo x >> "$0" 2>/dev/null && exit 2; '
    '{ [ -e "$0" ] || [ -L "$0" ]; } && rm -f "$0" 2>/dev/null && exit 4; '
    "exit 3"
)


def test_no_other_account_can_write_an_entry_code_servers_would_run(cache: Path) -> None:
    compile_cache.share_with(cache, NOBODY)
    (own,) = compile_cache.own_subfolders(cache)
    entry = next(own.iterdir())
    link = own.with_name(own.name.rsplit("-", 1)[0] + f"-{NOBODY}")
    assert link.is_symlink()

    for target in (entry, link / "planted", cache / "planted", link):
        tried = subprocess.run(
            [*AS_NOBODY, "sh", "-c", WRITE_OR_REMOVE, str(target)],
            capture_output=True,
            timeout=30,
        )
        assert tried.returncode == 3, target
    assert entry.stat().st_uid == os.getuid() and entry.stat().st_mode & 0o777 == 0o644
    assert link.is_symlink() and not (own / "planted").exists()


def test_share_with_leaves_what_is_there_and_the_platforms_own_account(cache: Path, shared: Path) -> None:
    (own,) = compile_cache.own_subfolders(cache)
    made_by_node = own.with_name(own.name.rsplit("-", 1)[0] + "-4242")
    made_by_node.mkdir()  # a sub-folder Node made for that account before: kept as it is
    try:
        compile_cache.share_with(cache, 4242)
        compile_cache.share_with(cache, os.getuid())

        assert made_by_node.is_dir() and not made_by_node.is_symlink()
        assert compile_cache.own_subfolders(cache) == [own]
    finally:
        made_by_node.rmdir()


def test_fill_runs_once_per_node_version(tools: Tools, cache: Path) -> None:
    (own,) = compile_cache.own_subfolders(cache)
    added = own / "added-by-a-code-server-run-as-root"
    added.write_text("")
    added.chmod(0o600)  # as Node writes its entries
    entries = sorted(p.name for p in own.iterdir())
    try:
        assert not compile_cache.fill(tools.node24, tools.code_server, cache)  # filled already
        assert sorted(p.name for p in own.iterdir()) == entries
        assert added.stat().st_mode & 0o777 == 0o644  # readable by every user's code-server again
    finally:
        added.unlink()

    older = cache / f"v0.0.1-x64-00000000-{os.getuid()}"
    older.mkdir()
    (older / "entry").write_text("")
    emptied = [own.rename(own.with_name("set-aside"))]
    try:
        assert compile_cache.fill(tools.node24, tools.code_server, cache)  # none for this Node
        assert any(
            p.name.startswith(compile_cache.node_tag(tools.node24))
            for p in compile_cache.own_subfolders(cache)
        )
    finally:
        for folder in compile_cache.own_subfolders(cache):
            shutil.rmtree(folder)
        emptied[0].rename(own)


def test_a_code_server_that_cannot_start_says_why(tools: Tools, shared: Path) -> None:
    broken = dataclasses.replace(tools, code_server=shared / "missing" / "out" / "node" / "entry.js")

    with pytest.raises(RuntimeError, match="before serving its workbench"):
        compile_cache.fill(broken.node24, broken.code_server, shared / "broken-cache", timeout=30)


def test_make_up_goes_on_without_the_cache_and_says_why(tools: Tools, shared: Path) -> None:
    entry = shared / "broken" / "node_modules" / "code-server" / "out" / "node" / "entry.js"
    entry.parent.mkdir(parents=True)  # a code-server whose entry is missing
    no_node = shared / "no-node"

    said = [compile_cache.fill_or_say_why(node, entry) for node in (tools.node24, no_node)]

    assert said[0].startswith("code-server's compile cache not filled (code-server ended")
    assert said[1].startswith("code-server's compile cache not filled (") and str(no_node) in said[1]
    assert said[0].endswith("servers start without it")


def test_a_code_server_installed_otherwise_has_no_cache(tools: Tools, tmp_path: Path) -> None:
    elsewhere = Path("/usr/local/bin/code-server")  # as an image may have it

    assert compile_cache.cache_folder(elsewhere) is None
    assert "not an npm installation" in compile_cache.fill_or_say_why(tools.node24, elsewhere)
    settings = load({"MLOPS_IDE_HOME": str(tmp_path)})
    shim = write_code_server_shim(settings, dataclasses.replace(tools, code_server=elsewhere)) / "code-server"
    assert compile_cache.VARIABLE not in shim.read_text() and str(elsewhere) in shim.read_text()


def test_the_shim_uses_the_cache_unless_the_user_chose_one(tools: Tools, tmp_path: Path) -> None:
    settings = load({"MLOPS_IDE_HOME": str(tmp_path)})
    node = tmp_path / "node"  # says which cache it was given
    node.write_text(f'#!/bin/sh\necho "${compile_cache.VARIABLE}"\n')
    node.chmod(0o755)
    shim = write_code_server_shim(settings, dataclasses.replace(tools, node24=node)) / "code-server"

    default = subprocess.run([shim], env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    chosen = subprocess.run(
        [shim],
        env={"PATH": "/usr/bin:/bin", compile_cache.VARIABLE: "/home/me/cache"},
        capture_output=True,
        text=True,
    )

    assert default.stdout.strip() == str(compile_cache.cache_folder(tools.code_server))
    assert chosen.stdout.strip() == "/home/me/cache"
