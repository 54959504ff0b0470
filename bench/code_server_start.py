"""CPU of one code-server start, to its workbench page, with and without the platform's
compile cache (mlops_ide.machine.state.compile_cache).

    python bench/code_server_start.py [--runs N]

Each run starts the installed code-server (Node 24, as the code-server shim runs it) on a
Unix socket in a new home, waits until it serves VS Code's workbench HTML, and reads the
CPU its processes spent (parent and child, user + system). The kinds take turns in every
round. As root the servers run as another account (nobody) that reads the platform's
cache through its link, as users' servers do; otherwise as this account. Medians and the
ratio; prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src")]

from mlops_ide.machine.state import compile_cache  # noqa: E402
from mlops_ide.machine.state.tools import Tools  # noqa: E402
from mlops_ide.processes import descendants  # noqa: E402

NOBODY = 65534


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and its live descendants."""
    total = 0
    for each in (pid, *descendants(pid)):
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def one_start(tools: Tools, cache: Path | None, place: Path) -> tuple[float, float]:
    """Seconds and CPU-seconds from start to the workbench page."""
    place.mkdir(mode=0o777)
    place.chmod(0o777)
    sock = place / "sock"
    (place / "config.yaml").write_text("disable-update-check: true\ndisable-workspace-trust: true\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(place), "CODE_SERVER_CONFIG": str(place / "config.yaml")}
    if cache:
        env[compile_cache.VARIABLE] = str(cache)
    account = (
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if os.geteuid() == 0 else []
    )
    argv = [*account, *compile_cache.code_server_command(tools.node24, tools.code_server, sock, place)]
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not compile_cache.workbench_served(sock, place):
            if process.poll() is not None:
                raise SystemExit(f"code-server ended with {process.returncode}")
            time.sleep(0.02)
        return time.perf_counter() - started, cpu_seconds(process.pid)
    finally:
        process.terminate()
        process.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    tools = Tools.load()
    cache = compile_cache.cache_folder(tools.code_server)
    compile_cache.fill(tools.node24, tools.code_server, cache)
    if os.geteuid() == 0:
        compile_cache.share_with(cache, NOBODY)
    results: dict[str, list[tuple[float, float]]] = {"no cache": [], "compile cache": []}
    work = Path(tempfile.mkdtemp(prefix="mlops-ide-bench-code-server-"))
    work.chmod(0o755)
    try:
        for round_ in range(args.runs):
            kinds = list(results) if round_ % 2 == 0 else list(reversed(results))
            for kind in kinds:
                place = work / f"{round_}-{kind.replace(' ', '-')}"
                results[kind].append(one_start(tools, cache if kind == "compile cache" else None, place))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"code-server start -> workbench HTML, {args.runs} runs each, median (max):")
    for kind, runs in results.items():
        seconds, cpu = zip(*runs, strict=True)
        print(
            f"  {kind:14} {statistics.median(cpu):.2f} CPU-s ({max(cpu):.2f})"
            f"   {statistics.median(seconds):.2f} s ({max(seconds):.2f})"
        )
    ratio = statistics.median(c for _, c in results["compile cache"]) / statistics.median(
        c for _, c in results["no cache"]
    )
    print(f"  CPU with the cache / without: x{ratio:.2f}")


if __name__ == "__main__":
    main()
