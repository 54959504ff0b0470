"""What `git push` prints on the real local platform (hub, git service, Airflow, MLflow):
four pushes by a user from her server's clone, as in her VS Code terminal. Used for the
transcript in docs/push-to-live.md; prints it (the figures in it are this run's).

    python bench/push_transcript.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from tests.support.airflow_api import airflow_and_alices_clone  # noqa: E402
from tests.support.gitrepos import git, user_commit  # noqa: E402

GOOD = """from airflow.sdk import dag, task


@dag(dag_id="daily_report", schedule=None)
def daily_report():
    @task
    def report() -> str:
        return "ok"

    report()


daily_report()
"""
BROKEN = GOOD.replace("import dag, task", "import dag, task\nimport pandas_profiling_not_installed")


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        airflow_and_alices_clone(Path(tmp) / "state") as (platform, _, clone),
    ):
        steps = [
            ({"dags/daily_report.py": BROKEN}, "a report DAG, importing what is not installed"),
            ({"dags/daily_report.py": GOOD}, "a report DAG"),
            ({"src/skin_cancer/NOTES.md": "the code outside dags/ changed\n"}, "notes"),
            ({"dags/daily_report.py": None}, "no more report"),
        ]
        for files, message in steps:
            if git(clone, "status", "--porcelain"):
                git(clone, "reset", "--quiet", "--hard", "origin/main")
            user_commit(clone, files, message)
            pushed = platform.terminal("alice", "git", "push", "origin", "main", cwd=clone)
            print(f"$ git commit -m {message!r} && git push")
            print(pushed.stderr.rstrip().replace(platform.env["MLOPS_IDE_GIT_PORT"], "8070"))
            print()
            if pushed.returncode:
                git(clone, "reset", "--quiet", "--hard", "origin/main")


if __name__ == "__main__":
    main()
