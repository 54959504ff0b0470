"""The pipeline's container engine, for MLOPS_IDE_PIPELINE_RUNNER=docker: podman's
Docker-compatible API (`podman system service`), run by the supervisor as the pipeline's
OS account, rootless. Airflow's DockerOperator (dags/pipeline_steps.py) starts each step's
container through it.

Why rootless, and why that account: whoever reaches a Docker API can start a container
with any folder mounted and any privilege the engine has. Root's engine would hand a
pushed DAG (Airflow runs DAG code as the pipeline's account) the whole machine. This
engine runs as the pipeline's account, in a user namespace of its subordinate IDs: a
container of it, even `--privileged` with `/` mounted, can do what that account can,
nothing more. Its socket is in a folder of that account's alone (0700).

In a container the account is the image's user (10001, `userns = keep-id:uid=10001`,
images/engine/pipeline-containers.conf): the step writes the run's arrays into the
mounted work folder as the pipeline's account, as a local step does.

Images: `make images` builds the pipeline image in root's engine (mlops_ide.supervisor.images); at
start the platform copies it into this engine when it is missing or was rebuilt (`podman
save | podman load`, once per build), and removes the versions it replaced.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path

from mlops_ide.machine import os_accounts
from mlops_ide.machine.os_accounts import as_account
from mlops_ide.machine.state.layout import StateError, ensure_folder
from mlops_ide.settings import Settings
from mlops_ide.supervisor import images
from mlops_ide.supervisor.runner import Process

CONF = images.ENGINE / "pipeline-containers.conf"
# The account's image store, kept between runs and shared by every platform of this
# machine (one account, one store: a copy of a 2 GB image is made once per build).
STORAGE = Path("/var/lib/mlops-ide/pipeline-containers")
RUN_ROOT = Path("/run/mlops-ide/pipeline-containers")
SUBORDINATE_IDS = 65536  # a container's user namespace: 0-65535
FIRST_SUBORDINATE_ID = 100000  # below: the machine's own users
LAST_ID = 2**32 - 2  # (uid_t)-1 means "no ID"
SOCKET_PATH_MAX = 108  # sun_path, its final NUL included
TOOLS = {
    "podman": "podman",
    "runc": "runc",
    "newuidmap": "uidmap",
    "newgidmap": "uidmap",
}
INSTALL = "run `make images` (it installs Debian's podman, runc and uidmap, and builds the pipeline image)"


class EngineError(StateError):
    """The engine cannot run; the message says what to do."""


def chosen(settings: Settings) -> bool:
    return settings.mode == "local" and settings.pipeline_runner == "docker"


def image(settings: Settings) -> str:
    """The image each step runs in: the one `make images` builds, unless set."""
    return settings.pipeline_image or images.tag_of("pipeline")


def runtime_dir(settings: Settings) -> Path:
    """The engine's XDG_RUNTIME_DIR, its socket inside: the pipeline account's alone."""
    return settings.home / "pipeline-engine"


def socket_path(settings: Settings) -> Path:
    return runtime_dir(settings) / "podman.sock"


def docker_host(settings: Settings) -> str:
    """DOCKER_HOST for the DockerOperator (and any Docker client) of the pipeline's account."""
    return f"unix://{socket_path(settings)}"


def problems(settings: Settings) -> list[str]:
    """What stops the Docker runner before anything starts: tools, root, the built image."""
    if not chosen(settings):
        return []
    missing = sorted({package for tool, package in TOOLS.items() if not find(tool)})
    if missing:
        return [
            f"MLOPS_IDE_PIPELINE_RUNNER=docker runs each step in a container, and Debian's "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: {INSTALL}; "
            "or set MLOPS_IDE_PIPELINE_RUNNER=local."
        ]
    if len(str(socket_path(settings)).encode()) >= SOCKET_PATH_MAX:
        return [
            f"MLOPS_IDE_PIPELINE_RUNNER=docker puts its engine's socket at {socket_path(settings)}, "
            f"longer than a socket's path may be ({SOCKET_PATH_MAX - 1} bytes): set MLOPS_IDE_HOME to a "
            "shorter folder."
        ]
    if not os_accounts.enabled():
        return [
            "MLOPS_IDE_PIPELINE_RUNNER=docker runs its container engine as the pipeline's OS account, which "
            "only a platform started as root has: start it as root, or set MLOPS_IDE_PIPELINE_RUNNER=local."
        ]
    if settings.pipeline_image is None and not images.image_exists(image(settings)):
        return [
            f"MLOPS_IDE_PIPELINE_RUNNER=docker runs each step in {image(settings)}, which is not built: "
            "run `make images IMAGES=pipeline`."
        ]
    return []


def find(tool: str) -> str | None:
    return shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def podman_argv(*args: str) -> list[str]:
    """podman as the pipeline's account, on its store (the account's podman would otherwise
    keep it under the HOME each state folder gives it)."""
    return [
        find("podman") or "podman",
        "--root",
        str(STORAGE / "storage"),
        "--runroot",
        str(RUN_ROOT / "run"),
        # its own state (the pause process, events, exit codes): podman records the first
        # one used in the store's database, so one per store, not per state folder
        "--tmpdir",
        str(RUN_ROOT / "tmp"),
        "--storage-driver",
        "overlay",
        *args,
    ]


def environment(settings: Settings, account: pwd.struct_passwd) -> dict[str, str]:
    """What the engine runs with, and nothing of root's: a DAG can read its environment."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",  # podman, runc, newuidmap
        "HOME": account.pw_dir,
        "USER": account.pw_name,
        "LOGNAME": account.pw_name,
        "LANG": "C.UTF-8",
        "XDG_RUNTIME_DIR": str(runtime_dir(settings)),
        "CONTAINERS_CONF": str(CONF),
    }


def ensure_subordinate_ids(account: pwd.struct_passwd) -> tuple[int, int]:
    """The account's subordinate user and group IDs (/etc/subuid, /etc/subgid): the same
    range in both, added once, after every range already given out. Returns it."""
    with os_accounts.ACCOUNT_FILES_LOCK:
        given = [subordinate_ranges(Path(path)) for path in ("/etc/subuid", "/etc/subgid")]
        owners = (account.pw_name, str(account.pw_uid))
        found = owned_range(given, owners)
        if found is not None:
            return found
        start = free_range(
            given, [user.pw_uid for user in pwd.getpwall()] + [g.gr_gid for g in grp.getgrall()]
        )
        last = start + SUBORDINATE_IDS - 1
        if last >= LAST_ID:
            raise EngineError(
                f"no room for {SUBORDINATE_IDS} subordinate IDs after {start - 1} (/etc/subuid, /etc/subgid, "
                f"the machine's users): give {account.pw_name} a range of its own with `usermod "
                "--add-subuids START-END --add-subgids START-END`"
            )
        for path in ("/etc/subuid", "/etc/subgid"):  # usermod refuses to add to a missing file
            Path(path).touch(mode=0o644, exist_ok=True)
        try:
            os_accounts.run(
                [
                    "usermod",
                    "--add-subuids",
                    f"{start}-{last}",
                    "--add-subgids",
                    f"{start}-{last}",
                    account.pw_name,
                ]
            )
        except os_accounts.AccountError as failed:
            raise EngineError(str(failed)) from None
        return start, SUBORDINATE_IDS


def owned_range(given: list[list[tuple[str, int, int]]], owners: tuple[str, ...]) -> tuple[int, int] | None:
    """A range of SUBORDINATE_IDS or more that `owners` (a name, a uid) have in every file."""
    theirs = [{(start, count) for owner, start, count in ranges if owner in owners} for ranges in given]
    fitting = [(start, count) for start, count in set.intersection(*theirs) if count >= SUBORDINATE_IDS]
    return min(fitting) if fitting else None


def free_range(given: list[list[tuple[str, int, int]]], taken: Iterable[int] = ()) -> int:
    """The start of a range after every range of every file and every ID `taken` by a user
    or a group of this machine (a container's ID is never someone's), never below 100000."""
    ends = [start + count for ranges in given for _, start, count in ranges]
    return max([FIRST_SUBORDINATE_ID, *ends, *(used + 1 for used in taken)])


SUBORDINATE_LINE = re.compile(r"^([^:#\s]+):(\d+):(\d+)$")


def subordinate_ranges(path: Path) -> list[tuple[str, int, int]]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    found = []
    for line in lines:
        match = SUBORDINATE_LINE.match(line.strip())
        if match:
            found.append((match[1], int(match[2]), int(match[3])))
    return found


def ensure_folders(settings: Settings, account: pwd.struct_passwd) -> None:
    for folder in (STORAGE.parent, RUN_ROOT.parent):
        ensure_folder(folder, 0o711)  # root's: others may pass, not list
    for folder in (STORAGE, RUN_ROOT, runtime_dir(settings)):
        os_accounts.ensure_home(folder, account.pw_uid, account.pw_gid)


def root_image_id(reference: str) -> str | None:
    """The image's ID in root's engine (where `make images` builds), None when not built."""
    shown = images.podman("image", "inspect", "--format", "{{.Id}}", reference, capture=True, check=False)
    return shown.stdout.strip() if shown.returncode == 0 else None


def account_image_id(settings: Settings, account: pwd.struct_passwd, reference: str) -> str | None:
    """The image's ID in the pipeline account's engine, None when it has no such image."""
    shown = subprocess.run(
        podman_argv("image", "inspect", "--format", "{{.Id}}", reference),
        env=environment(settings, account),
        capture_output=True,
        text=True,
        **as_account(account),
    )
    return shown.stdout.strip() if shown.returncode == 0 else None


def prepare(settings: Settings, account: pwd.struct_passwd) -> Iterator[str]:
    """The account's subordinate IDs and folders, and the pipeline image in its engine, the
    same build as root's (copied when it differs, each line said before its step)."""
    ensure_subordinate_ids(account)
    ensure_folders(settings, account)
    wanted = image(settings)
    built = root_image_id(wanted)
    present = account_image_id(settings, account, wanted)
    if built is None and present is None:
        raise EngineError(f"{wanted} is not built: run `make images IMAGES=pipeline`")
    if built is None or present == built:  # up to date, or loaded into the account's engine by hand
        return
    yield f"{wanted} into the pipeline's container engine (after each build: about 90 s)"
    copy_image(settings, account, wanted)


def copy_image(settings: Settings, account: pwd.struct_passwd, wanted: str) -> None:
    """`podman save` from root's engine into `podman load` of the account's; then the
    versions it replaced (untagged now: each a copy of gigabytes) go."""
    env = environment(settings, account)
    log = settings.home / "logs" / "pipeline-engine-load.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        save = subprocess.Popen(
            [images.find_tool("podman"), "save", wanted],
            env=images.engine_env(),
            stdout=subprocess.PIPE,
            stderr=out,
        )
        load = subprocess.run(
            podman_argv("load"), env=env, stdin=save.stdout, stdout=out, stderr=out, **as_account(account)
        )
        save.stdout.close()
        saved = save.wait()
    if saved or load.returncode:
        raise EngineError(f"copying {wanted} into the pipeline's container engine failed: see {log}")
    subprocess.run(
        podman_argv("image", "prune", "--force"), env=env, capture_output=True, **as_account(account)
    )


def process(settings: Settings, account: pwd.struct_passwd) -> Process:
    """The engine's API on its socket, for as long as the platform runs (`--time 0`)."""
    socket = socket_path(settings)
    return Process(
        name="pipeline container engine",
        argv=podman_argv("system", "service", "--time", "0", f"unix://{socket}"),
        env=environment(settings, account),
        cwd=runtime_dir(settings),
        log=settings.home / "logs" / "pipeline-engine.log",
        ready_url=f"http+unix://{urllib.parse.quote(str(socket), safe='')}/_ping",
        account=account,
    )
