"""The platform's smoke test: proves a push reached Airflow and runs from its commit.

It is also the DAG that the git remote's post-receive hook names when it asks Airflow to
re-parse the bundle (Airflow 3 re-parses a whole bundle for any one of its files), so it
must stay valid: keep it small, import nothing heavy, do no I/O at import.
"""

from __future__ import annotations

from airflow.sdk import dag, task


@dag(
    dag_id="platform_smoke_test",
    schedule=None,
    catchup=False,
    tags=["platform"],
    doc_md=__doc__,
)
def platform_smoke_test():
    @task
    def report_bundle_version(ti=None) -> str:
        """Log and return the commit this run's DAG code came from."""
        version = ti.bundle_instance.version or ""
        print(f"running DAG code from commit {version}")
        return version

    report_bundle_version()


platform_smoke_test()
