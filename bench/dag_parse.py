"""Top-level body cost of every DAG file, as Airflow's DagBag loads it, with the network
and database blocked (src/mlops_ide/portable/dag_check.py). Medians over runs; target <= 50 ms.

    python bench/dag_parse.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

from mlops_ide.machine.state.tools import Tools  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs
    python = str(Tools.load().airflow_python)
    seconds: dict[str, list[float]] = {}
    for _ in range(runs):
        result = subprocess.run(
            [python, str(ROOT / "src" / "mlops_ide" / "portable" / "dag_check.py"), str(ROOT / "dags")],
            capture_output=True,
            text=True,
            check=True,
        )
        for entry in json.loads(result.stdout)["files"]:
            seconds.setdefault(entry["file"], []).append(entry["body_seconds"])
    print(f"DAG file top-level body (airflow.sdk already imported), {runs} runs, target <= 50 ms")
    for name, values in sorted(seconds.items()):
        print(
            f"  {name:40s} median {statistics.median(values) * 1000:6.1f} ms  (max {max(values) * 1000:.1f})"
        )


if __name__ == "__main__":
    main()
