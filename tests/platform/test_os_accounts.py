"""One OS account per user when the platform runs as root (as CI does): each server runs as
its user's account, and one user's account can read neither another's home nor the
platform's secrets. Real accounts, made by the platform itself."""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
from pathlib import Path

import pytest

from mlops_ide.hub.modes import load
from mlops_ide.machine import os_accounts
from mlops_ide.machine.state import compile_cache
from mlops_ide.machine.state.tools import Tools
from mlops_ide.processes import descendants
from mlops_ide.supervisor.up import banner
from tests.support.local_platform import PlatformConfig, RunningPlatform

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="OS accounts per user need root (CI runs as root)")


PLATFORM = PlatformConfig("accounts")


@pytest.fixture(scope="module")
def platform(platform: RunningPlatform) -> RunningPlatform:
    """The shared platform, with alice's and bob's servers running in VS Code (alice's link
    to code-server's compile cache made anew by her spawn)."""
    for link in compile_cache_links("alice"):
        link.unlink()
    for user in ("alice", "bob"):
        platform.open_vscode(platform.login(user), user)
    return platform


def compile_cache_links(user: str) -> list[Path]:
    with contextlib.suppress(KeyError):  # no account yet: no link either
        cache = compile_cache.cache_folder(Tools.load().code_server)
        return [link for link in cache.glob(f"*-{uid_of(user)}") if link.is_symlink()]
    return []


def uid_of(user: str) -> int:
    return pwd.getpwnam(os_accounts.system_name(user)).pw_uid


def as_user(user: str, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    account = pwd.getpwnam(os_accounts.system_name(user))
    env = {"HOME": account.pw_dir, "PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(
        list(argv),
        user=account.pw_uid,
        group=account.pw_gid,
        extra_groups=os.getgrouplist(account.pw_name, account.pw_gid),
        env=env,
        cwd=cwd or account.pw_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def server_uids(platform: RunningPlatform, user: str) -> set[int]:
    """The uids of every process of `user`'s server (found by the hub's JUPYTERHUB_USER)."""
    uids = set()
    for pid in descendants(platform.proc.pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        if f"JUPYTERHUB_USER={user}".encode() in environ:
            uids.add(int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1]))
    return uids


def test_each_server_runs_as_its_users_own_account(platform: RunningPlatform) -> None:
    assert server_uids(platform, "alice") == {uid_of("alice")}
    assert server_uids(platform, "bob") == {uid_of("bob")}
    assert uid_of("alice") not in (0, uid_of("bob"))


def test_the_home_is_the_users_alone(platform: RunningPlatform) -> None:
    home = platform.home / "homes" / "alice"

    assert home.stat().st_uid == uid_of("alice") and home.stat().st_mode & 0o777 == 0o700
    assert (home / "pipelines" / "dags").is_dir()  # cloned by the startup hook, as alice
    assert (home / "pipelines" / "dags").stat().st_uid == uid_of("alice")


def test_each_users_code_server_reads_the_platforms_compile_cache(platform: RunningPlatform) -> None:
    cache = compile_cache.cache_folder(Tools.load().code_server)
    (own,) = [folder for folder in compile_cache.own_subfolders(cache) if any(folder.iterdir())]
    (link,) = compile_cache_links("alice")
    given = set()
    for pid in descendants(platform.proc.pid):
        with contextlib.suppress(OSError):
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if (
                b"JUPYTERHUB_USER=alice" in environ
                and b"code-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
            ):
                given |= {e for e in environ if e.startswith(compile_cache.VARIABLE.encode() + b"=")}

    assert link.resolve() == own.resolve()  # made by the hub, as root, at her spawn
    assert given == {f"{compile_cache.VARIABLE}={cache}".encode()}  # by the code-server shim
    assert (
        as_user("alice", "sh", "-c", 'cat "$0" >/dev/null', str(link / next(own.iterdir()).name)).returncode
        == 0
    )
    assert as_user("alice", "touch", str(link / "planted")).returncode != 0


def preloaded_server(platform: RunningPlatform) -> int:
    (pid,) = [
        pid
        for pid in descendants(platform.proc.pid)
        if b"startup.preloaded_server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    return pid


def memory_holds(pid: int, secret: bytes) -> bool:
    """Whether any readable memory of `pid` holds `secret` (read as root)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split("-"))
            if not perms.startswith("r") or line.rstrip().endswith("[vvar]"):
                continue
            for at in range(start, end, 1 << 24):
                try:
                    mem.seek(at)
                    chunk = mem.read(min(end - at, (1 << 24) + len(secret)))
                except OSError:  # a region the kernel will not read out
                    break
                if secret in chunk:
                    return True
    return False


def test_servers_are_forked_by_a_preloaded_server_that_holds_no_secret(platform: RunningPlatform) -> None:
    forker = preloaded_server(platform)
    environ = Path(f"/proc/{forker}/environ").read_bytes().split(b"\0")
    names = {item.split(b"=")[0].decode() for item in environ}
    for user in ("alice", "bob"):  # bob's environment differs from the first server's in its own part only
        server = Path(f"/proc/{platform.server_pid(user)}")
        status = (server / "status").read_text()

        assert f"PPid:\t{forker}\n" in status  # forked,
        command = (server / "cmdline").read_bytes().split(b"\0")
        assert command[0].endswith(b"jupyterhub-singleuser")  # and run in place
        assert "CapEff:\t0000000000000000" in status
    assert "PATH" in names  # what every server shares, and nothing of one user's:
    assert not [name for name in names if any(word in name for word in ("TOKEN", "SECRET", "PASSWORD"))]
    assert not {"HOME", "USER", "JUPYTERHUB_USER", "JUPYTERHUB_API_URL", "MLOPS_IDE_GIT_USERNAME"} & names


def test_no_server_memory_holds_another_users_tokens(platform: RunningPlatform) -> None:
    alice = platform.server_environ("alice")
    secrets = [alice[name].encode() for name in ("JUPYTERHUB_API_TOKEN", "MLOPS_IDE_GIT_TOKEN")]
    assert all(len(secret) >= 32 for secret in secrets)
    assert memory_holds(platform.server_pid("alice"), secrets[0])  # the search finds what is there

    for pid in (platform.server_pid("bob"), preloaded_server(platform)):  # bob's forked after alice's
        assert not any(memory_holds(pid, secret) for secret in secrets)


def test_another_users_account_reads_no_home_and_no_secret(platform: RunningPlatform) -> None:
    state = platform.home
    planted = state / "airflow" / "passwords.json"  # as Airflow's, even if it were world-readable
    planted.parent.mkdir(mode=0o700, exist_ok=True)
    planted.write_text('{"admin": "secret"}')
    planted.chmod(0o644)
    for path in (
        state / "homes" / "alice" / "pipelines" / "README.md",
        state / "password",
        state / "jupyterhub.sqlite",
        state / "jupyterhub_cookie_secret",
        state / "airflow" / "passwords.json",
    ):
        result = as_user("bob", "cat", str(path))
        assert result.returncode != 0 and "Permission denied" in result.stderr, path
    listing = as_user("bob", "ls", str(state))
    assert listing.returncode != 0 and "Permission denied" in listing.stderr  # passable, not listable
    assert as_user("bob", "ls", str(state / "homes" / "alice")).returncode != 0


def test_a_user_pushes_as_themselves_and_cannot_drop_commits(platform: RunningPlatform) -> None:
    clone = platform.home / "homes" / "alice" / "pipelines"
    remote = platform.home / "remote" / "pipelines.git"
    (clone / "dags" / "alices_dag.py").write_text("# alice's\n")
    os.chown(clone / "dags" / "alices_dag.py", uid_of("alice"), -1)
    identity = ("-c", "user.name=Alice", "-c", "user.email=alice@localhost")
    assert as_user("alice", "git", *identity, "add", "dags/alices_dag.py", cwd=clone).returncode == 0
    assert as_user("alice", "git", *identity, "commit", "-q", "-m", "alice's dag", cwd=clone).returncode == 0

    pushed = platform.terminal("alice", "git", "push", "-q", "origin", "main", cwd=clone)
    rewrite = platform.terminal("alice", "git", "push", "-q", "--force", "origin", "HEAD~1:main", cwd=clone)

    assert pushed.returncode == 0, pushed.stderr
    head = subprocess.run(["git", "rev-parse", "main"], cwd=remote, capture_output=True, text=True).stdout
    assert head.strip() == as_user("alice", "git", "rev-parse", "HEAD", cwd=clone).stdout.strip()
    assert rewrite.returncode != 0 and "non-fast-forward" in rewrite.stderr
    # the remote's log names who pushed, as the hub knows them
    reflog = subprocess.run(
        ["git", "reflog", "show", "--format=%gn", "main"], cwd=remote, capture_output=True, text=True
    )
    assert reflog.stdout.splitlines()[0] == "alice"


def test_no_user_can_write_the_remotes_files(platform: RunningPlatform) -> None:
    """Only the git service's account writes the remote: a user cannot rewrite the branch
    by hand, add objects, point the remote at other hooks (`commondir`) or change its
    config or hooks, which would run code as the service or drop the team's commits."""
    remote = platform.home / "remote" / "pipelines.git"
    main = (
        (remote / "refs" / "heads" / "main").read_text()
        if (remote / "refs" / "heads" / "main").exists()
        else None
    )

    for argv in (
        ("git", "config", "receive.fsckObjects", "false"),
        ("sh", "-c", "echo 'touch /tmp/owned' > hooks/post-receive"),
        ("mv", "config", "config.old"),
        ("sh", "-c", "echo 0000000000000000000000000000000000000000 > refs/heads/main"),
        ("sh", "-c", "echo x > refs/heads/bobs-branch"),
        ("sh", "-c", "echo x > objects/planted"),
        ("sh", "-c", "echo /tmp/elsewhere > commondir"),
        ("sh", "-c", "echo x >> logs/refs/heads/main"),
    ):
        result = as_user("bob", *argv, cwd=remote)
        assert result.returncode != 0, argv
    assert "fsckObjects = true" in (remote / "config").read_text()
    assert "owned" not in (remote / "hooks" / "post-receive").read_text()  # still the platform's hook
    assert not (remote / "commondir").exists()
    if main is not None:
        assert (remote / "refs" / "heads" / "main").read_text() == main


def test_the_git_service_refuses_a_push_without_a_users_token(platform: RunningPlatform) -> None:
    clone = platform.home / "homes" / "bob" / "pipelines"
    no_token = platform.terminal(
        "bob", "git", "push", "-q", "origin", "main", cwd=clone, MLOPS_IDE_GIT_TOKEN=""
    )
    forged = platform.terminal(
        "bob", "git", "push", "-q", "origin", "main", cwd=clone, MLOPS_IDE_GIT_TOKEN="f" * 32
    )

    assert no_token.returncode != 0 and "could not read Username" in no_token.stderr
    assert forged.returncode != 0 and "not a hub user's" in forged.stderr


def test_without_root_the_banner_says_servers_share_one_account() -> None:
    lines = banner(load({}), "pw", made=False, seconds=1.0, accounts=False)

    assert any("users are not kept apart (run as root for one OS account per user)" in line for line in lines)
    assert any(
        "a pushed DAG can stop MLflow and Airflow's API server and read MLflow's files" in line
        for line in lines
    )
    assert not any("not kept apart" in line for line in banner(load({}), "pw", made=False, seconds=1.0))
