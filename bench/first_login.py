"""A new user's first login to VS Code on the real local platform (hub, proxy, git
service), the server started by the login: with the spawner returning once the server
listens (ours) and as soon as its process exists (JupyterHub's way, the hub then polls
with a backoff that doubles), alternating in one run. With `--against REF`: this
checkout against a worktree of REF (an earlier commit), alternating in one run.

    python bench/first_login.py [--users N] [--against REF] [--services LIST]

Prints medians of login -> server ready (the hub's API says so) and login -> VS Code's
workbench HTML, and the ratio of the two ways. Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from bench.login_to_vscode import http_login_to_vscode  # noqa: E402
from tests.support.local_platform import RunningPlatform  # noqa: E402

WAYS = {"returns when listening": "True", "returns at once (hub polls)": "False"}


def checkout_of(ref: str, parent: Path) -> Path:
    """A worktree of `ref` to start instead of this checkout, with this checkout's tools."""
    path = parent / "checkout-against"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref], check=True)
    (path / ".tools.env").write_text((ROOT / ".tools.env").read_text())
    return path


def ways(tmp: Path, against: str | None) -> dict[str, dict[str, str]]:
    """Each way's platform settings."""
    if against:
        old = checkout_of(against, tmp)
        return {"this checkout": {}, against: {"PYTHONPATH": f"{old}/src:{old}"}}
    found = {}
    for way, value in WAYS.items():
        config = tmp / f"config-{value}"
        config.mkdir(exist_ok=True)
        (config / "spawner.py").write_text(f"c.LocalVSCodeSpawner.return_when_listening = {value}\n")
        found[way] = {"MLOPS_IDE_HUB_CONFIG_DIR": str(config)}
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=6)
    parser.add_argument("--against", metavar="REF", help="compare this checkout with a git ref")
    parser.add_argument("--services", default="none", help="MLOPS_IDE_SERVICES; all: as make up")
    options = parser.parse_args()
    users = options.users
    with tempfile.TemporaryDirectory() as tmp:
        variants = ways(Path(tmp), options.against)
        figures: dict[str, list[tuple[float, float]]] = {way: [] for way in variants}
        try:
            for n in range(users):
                for i, (way, settings) in enumerate(variants.items()):  # alternating: noise hits both
                    services = {} if options.services == "all" else {"MLOPS_IDE_SERVICES": options.services}
                    platform = RunningPlatform(Path(tmp) / f"state-{i}", **services, **settings).start(
                        timeout=300
                    )
                    try:  # right after the banner, as a first login after `make up`
                        figures[way].append(http_login_to_vscode(platform, f"user{n}"))
                    finally:
                        platform.stop(timeout=300)
        finally:
            if options.against:
                remove = ["git", "-C", str(ROOT), "worktree", "remove", "--force"]
                subprocess.run([*remove, str(Path(tmp) / "checkout-against")], check=False)
    print(f"{users} first logins each, a new user and a new server each time, services: {options.services}")
    medians = {}
    for way, runs in figures.items():
        ready = statistics.median(r for r, _ in runs)
        html = statistics.median(h for _, h in runs)
        medians[way] = (ready, html)
        print(f"{way:30s} login -> ready {ready:5.2f} s   login -> VS Code HTML {html:5.2f} s")
    ours, theirs = medians.values()
    print(f"{' / '.join(medians)}: ready {ours[0] / theirs[0]:.2f}x, VS Code HTML {ours[1] / theirs[1]:.2f}x")


if __name__ == "__main__":
    main()
