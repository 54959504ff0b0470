"""The cost of a user's OS account at their first start (root only): `ensure_account` for
new names (useradd, the home handed over), and again for names that exist. Target: well
under 0.5 s. The accounts are removed afterwards.

    sudo python bench/os_accounts.py [--users 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mlops_ide.machine import os_accounts


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=10)
    count = parser.parse_args().users
    if os.geteuid() != 0:
        print("needs root: OS accounts per user are made only when the platform runs as root")
        return
    names = [f"bench{os.getpid()}x{n}" for n in range(count)]
    with tempfile.TemporaryDirectory() as tmp:
        homes = Path(tmp)
        try:
            first = [timed(os_accounts.ensure_account, name, homes / name) for name in names]
            again = [timed(os_accounts.ensure_account, name, homes / name) for name in names]
        finally:
            for name in names:
                subprocess.run(["userdel", os_accounts.system_name(name)], capture_output=True)
    print(f"OS account per user, {count} users, 2 cores (target: well under 0.5 s)")
    for label, times in (("first start (useradd + home)", first), ("later starts (checks only)", again)):
        print(
            f"  {label:<29}: median {statistics.median(times) * 1000:6.1f} ms, max {max(times) * 1000:.1f} ms"
        )


if __name__ == "__main__":
    main()
