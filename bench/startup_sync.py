"""Startup hook timings: an up-to-date run (the common start) and a clone of this
repository, from a local bare remote. Prints medians; asserts nothing.

    python bench/startup_sync.py [--runs N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from startup.sync import sync  # noqa: E402


def timed(action) -> float:
    with contextlib.redirect_stderr(io.StringIO()):  # the hook's one log line per run
        started = time.perf_counter()
        action()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["HOME"] = str(tmp / "home")
        os.environ["GIT_CONFIG_NOSYSTEM"] = "1"
        (tmp / "home").mkdir()
        remote = tmp / "pipelines.git"
        subprocess.run(["git", "clone", "--quiet", "--bare", str(ROOT), str(remote)], check=True)
        commits = subprocess.run(
            ["git", "rev-list", "--count", "HEAD"], cwd=remote, capture_output=True, text=True
        ).stdout.strip()
        files = len(
            subprocess.run(
                ["git", "ls-tree", "-r", "--name-only", "HEAD"], cwd=remote, capture_output=True, text=True
            ).stdout.splitlines()
        )

        def clone(n: int) -> None:
            outcome = sync(str(remote), "main", tmp / "clones" / str(n), user="bench")
            assert outcome.state == "cloned", outcome

        clones = [timed(lambda n=n: clone(n)) for n in range(runs)]

        dest = tmp / "clones" / "0"

        def noop() -> None:
            assert sync(str(remote), "main", dest, user="bench").state == "up_to_date"

        noops = [timed(noop) for _ in range(runs)]
        cli = [
            timed(
                lambda: subprocess.run(
                    [sys.executable, "-m", "startup.sync", "--url", str(remote), "--dest", str(dest)],
                    cwd=ROOT,
                    check=True,
                    capture_output=True,
                )
            )
            for _ in range(runs)
        ]

    print(
        f"repository: this checkout's HEAD, {commits} commit(s), {files} files; "
        f"local bare remote; {runs} runs"
    )
    print(
        f"up to date, in process (start wrapper): median {statistics.median(noops) * 1000:7.1f} ms  "
        f"(min {min(noops) * 1000:.1f}, max {max(noops) * 1000:.1f})"
    )
    print(
        f"up to date, `python -m startup.sync`:   median {statistics.median(cli) * 1000:7.1f} ms  "
        f"(min {min(cli) * 1000:.1f}, max {max(cli) * 1000:.1f})   target <= 500 ms"
    )
    print(
        f"clone, in process:                      median {statistics.median(clones) * 1000:7.1f} ms  "
        f"(min {min(clones) * 1000:.1f}, max {max(clones) * 1000:.1f})"
    )


if __name__ == "__main__":
    main()
