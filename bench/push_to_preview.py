"""Push to preview, measured on the real local platform (hub, Airflow, MLflow, git service).

    python bench/push_to_preview.py [--previews N]

A user (alice) pushes branches `preview/alice/t<i>` from her server's clone, through the git
service, as her VS Code terminal would: each a new preview of the repository's DAGs with
one DAG file edited, then a second push to the same preview (its slot moves to the new
commit). Prints medians and p95 of
  - git push -> the preview's edited DAG listed by Airflow's REST API under its preview id,
    at the pushed commit (the push command itself returns once its output names the preview)
  - git push of the preview's deletion -> its DAGs stale (gone from Airflow's list)
for new previews and for pushes to a preview that runs. Previews are deleted after each
round, so the slots (MLOPS_IDE_PREVIEW_SLOTS) and the limit per person never refuse one.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from bench.push_to_dag import DAG, line  # noqa: E402
from tests.support.airflow_api import AirflowAPI, airflow_and_alices_clone  # noqa: E402
from tests.support.gitrepos import git, user_commit  # noqa: E402
from tests.support.local_platform import RunningPlatform, wait_for  # noqa: E402


def timed_push(platform: RunningPlatform, clone: Path, refspec: str) -> float:
    """Push from alice's terminal; when the push started."""
    started = time.monotonic()
    pushed = platform.terminal("alice", "git", "push", "--quiet", "origin", refspec, cwd=clone)
    if pushed.returncode:
        raise RuntimeError(f"push failed: {pushed.stderr}")
    return started


def listed_at(api: AirflowAPI, dag_id: str, commit: str) -> bool:
    dag = api.dag(dag_id)
    return bool(dag) and not dag["is_stale"] and dag.get("bundle_version") == commit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--previews", type=int, default=5)
    options = parser.parse_args()
    new, moved, deleted = [], [], []
    with (
        tempfile.TemporaryDirectory() as tmp,
        airflow_and_alices_clone(Path(tmp) / "state") as (platform, api, clone),
    ):
        for n in range(options.previews):
            topic, dag_id = f"t{n}", f"bench_preview_{n}"
            preview_id = f"{dag_id}__alice_t{n}"
            git(clone, "checkout", "--quiet", "-B", topic, "origin/main")
            for took, doc in ((new, "first"), (moved, "second")):
                commit = user_commit(clone, {f"dags/{dag_id}.py": DAG.format(dag_id=dag_id, doc=doc)}, doc)
                started = timed_push(platform, clone, f"HEAD:preview/alice/{topic}")
                wait_for(
                    lambda preview_id=preview_id, commit=commit: listed_at(api, preview_id, commit),
                    120,
                    f"{preview_id} at {commit[:12]}",
                )
                took.append(time.monotonic() - started)
            started = timed_push(platform, clone, f":preview/alice/{topic}")
            wait_for(
                lambda preview_id=preview_id: (api.dag(preview_id) or {"is_stale": True})["is_stale"],
                120,
                "its DAGs stale",
            )
            deleted.append(time.monotonic() - started)
    print(f"{options.previews} previews by a user through the git service, 2 cores; hub + MLflow + Airflow")
    print(line("push of a new preview   -> its DAG listed", new) + "   target: within seconds")
    print(line("push to a running one   -> its DAG listed", moved))
    print(line("push of its deletion    -> its DAGs stale", deleted) + "   target: within a minute")


if __name__ == "__main__":
    main()
