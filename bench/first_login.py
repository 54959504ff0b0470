"""A new user's first login to VS Code on the real local platform (hub, proxy, git
service), the server started by the login: with the spawner returning once the server
listens (ours) and as soon as its process exists (JupyterHub's way, the hub then polls
with a backoff that doubles), alternating in one run.

    python bench/first_login.py [--users N]

Prints medians of login -> server ready (the hub's API says so) and login -> VS Code's
workbench HTML, and the ratio of the two ways. Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from bench.login_to_vscode import http_login_to_vscode  # noqa: E402
from tests.support.local_platform import RunningPlatform  # noqa: E402

WAYS = {"returns when listening": "True", "returns at once (hub polls)": "False"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=6)
    users = parser.parse_args().users
    figures: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(users):
            for way, value in WAYS.items():  # alternating: the machine's noise hits both
                config = Path(tmp) / f"config-{value}"
                config.mkdir(exist_ok=True)
                (config / "spawner.py").write_text(f"c.LocalVSCodeSpawner.return_when_listening = {value}\n")
                platform = RunningPlatform(
                    Path(tmp) / f"state-{value}", MLOPS_IDE_HUB_CONFIG_DIR=str(config)
                ).start()
                try:
                    figures[way].append(http_login_to_vscode(platform, f"user{n}"))
                finally:
                    platform.stop()
    print(f"{users} first logins each, a new user and a new server each time, 2 cores, hub alone")
    medians = {}
    for way, runs in figures.items():
        ready = statistics.median(r for r, _ in runs)
        html = statistics.median(h for _, h in runs)
        medians[way] = (ready, html)
        print(f"{way:30s} login -> ready {ready:5.2f} s   login -> VS Code HTML {html:5.2f} s")
    ours, theirs = medians.values()
    print(f"ours / hub polling: ready {ours[0] / theirs[0]:.2f}x, VS Code HTML {ours[1] / theirs[1]:.2f}x")


if __name__ == "__main__":
    main()
