"""The clone's pre-push check, for a remote outside the platform (GitHub: nobody's hook of ours
runs there, so the user's own clone checks what it sends).

    python bench/pre_push_check.py [--pushes N]

A clone as the start hook leaves it (our pre-push hook, the `mlops-ide` command user_tools
writes, a DAG folder `dags/` holding the platform's example DAG), pushing to a bare remote that
is not the platform's. Each round commits a new DAG file and times `git push` three ways:
  - with the hook, its warm check running (the second push on: target <= 1 s);
  - with the hook and no warm check (MLOPS_IDE_WARM_CHECK=0: a fresh Airflow import each push);
  - with `--no-verify` (git alone).
The first push of the run, which starts the warm check, is reported apart. Asserts nothing.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from bench.push_to_dag import DAG  # noqa: E402
from mlops_ide.workspace import user_tools, warm_dag_check  # noqa: E402
from startup import git_hooks  # noqa: E402
from tests.support.platform_tools import tools_file_value  # noqa: E402


def git(*args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def timed_push(clone: Path, env: dict[str, str], n: int, *flags: str) -> float:
    (clone / "dags" / f"bench_pre_push_{n}.py").write_text(DAG.format(dag_id=f"bench_pre_push_{n}", doc=""))
    git("add", "-A", cwd=clone)
    git("commit", "-qm", f"DAG {n}", cwd=clone)
    started = time.perf_counter()
    subprocess.run(
        ["git", "push", "-q", *flags, "origin", "HEAD:main"],
        cwd=clone,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pushes", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pre-push-") as top:
        top = Path(top)
        home, remote, clone = top / "home", top / "remote.git", top / "home" / "pipeline"
        home.mkdir()
        git("init", "-q", "--bare", "-b", "main", str(remote), cwd=top)
        git("clone", "-q", str(remote), str(clone), cwd=top)
        git("config", "user.email", "alice@example.org", cwd=clone)
        git("config", "user.name", "alice", cwd=clone)
        (clone / "dags").mkdir()
        (clone / "dags" / "bench_pre_push_0.py").write_text(DAG.format(dag_id="bench_pre_push_0", doc=""))
        git("add", "-A", cwd=clone)
        git("commit", "-qm", "a DAG", cwd=clone)
        git("push", "-q", "origin", "HEAD:main", cwd=clone)
        git_hooks.install_pre_push(clone)
        python = Path(tools_file_value("MLOPS_IDE_AIRFLOW_PYTHON"))
        bin_dir = user_tools.write(top / "bin", python, python, ROOT / "src", {})
        env = {
            **os.environ,
            "HOME": str(home),
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "MLOPS_IDE_REPO_URL": "https://github.com/team/pipeline.git",  # not this remote
            "MLOPS_IDE_DAGS_FOLDER": "dags",
        }
        env.pop("XDG_RUNTIME_DIR", None)
        cold_env = {**env, warm_dag_check.SWITCH: "0"}
        first = timed_push(clone, env, 1)
        warm, cold, bare = [], [], []
        n = 2
        for _ in range(options.pushes):
            ways = ((warm, env, ()), (cold, cold_env, ()), (bare, env, ("--no-verify",)))
            for where, run_env, flags in ways:
                where.append(timed_push(clone, run_env, n, *flags))
                n += 1
        warm_dag_check.stop_all(warm_dag_check.sockets_folder(home))
    print(f"git push of a new DAG file to a remote outside, {options.pushes} pushes each (median / max):")
    print(f"  with the hook, warm check     {statistics.median(warm):5.2f} s / {max(warm):5.2f} s   (<= 1 s)")
    print(f"  with the hook, fresh import   {statistics.median(cold):5.2f} s / {max(cold):5.2f} s")
    print(f"  --no-verify (git alone)       {statistics.median(bare):5.2f} s / {max(bare):5.2f} s")
    print(f"  the first push (starts the warm check): {first:.2f} s")
    print(f"  warm / fresh: x{statistics.median(warm) / statistics.median(cold):.2f}")


if __name__ == "__main__":
    main()
