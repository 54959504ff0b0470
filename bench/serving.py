"""Serving throughput: the same champion model behind our FastAPI app and behind
`mlflow models serve --env-manager local`, driven from this (separate) process on loopback.

    python bench/serving.py [--requests N]     # run with the pipeline virtualenv's python

For each server: N sequential requests and N at concurrency 8; requests/s, p50 and p95.
Ours gets a PNG upload (its API); MLflow's gets the same image as a JSON tensor (its API).
Targets: ours >= 5x the requests/s of `mlflow models serve`, p95 <= 15 ms sequential.
Asserts nothing.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "src")]

import mlflow  # noqa: E402
import numpy as np  # noqa: E402

from mlops_ide.machine.components.mlflow import server_process as mlflow_server_process  # noqa: E402
from skin_cancer import CHAMPION  # noqa: E402
from skin_cancer.data import decode_image  # noqa: E402
from skin_cancer.preprocess import preprocess  # noqa: E402
from skin_cancer.synthetic import generate, lesion  # noqa: E402
from skin_cancer.train import TrainParams, train  # noqa: E402
from tests.support.platform_tools import free_port, start_logged, stop, tools_file_value, wait_until_healthy  # noqa: E402

MODEL = "serving_bench"


def start(argv: list[str], env: dict, health: str, log: Path) -> subprocess.Popen:
    process = start_logged(argv, env, log)
    wait_until_healthy(health, process, log, timeout=180)
    return process


def measure(send, count: int, concurrency: int) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p95 ms) for `count` calls of `send` at `concurrency`."""

    def one(_: int) -> float:
        started = time.perf_counter()
        send()
        return time.perf_counter() - started

    for _ in range(10):  # warm up
        send()
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        latencies = list(pool.map(one, range(count)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=20, method="inclusive")
    return count / elapsed, statistics.median(latencies) * 1000, cuts[-1] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    count = parser.parse_args().requests

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mlflow_port, ours_port, theirs_port = free_port(), free_port(), free_port()
        mlflow_bin = Path(tools_file_value("MLOPS_IDE_AIRFLOW_PYTHON")).parent / "mlflow"
        argv, env = mlflow_server_process(mlflow_bin, mlflow_port, tmp)
        tracking = start(argv, env, f"http://127.0.0.1:{mlflow_port}/health", tmp / "mlflow.log")
        processes = [tracking]
        try:
            os.environ["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{mlflow_port}"
            generate(tmp / "data", train=40, test=10)
            preprocess(str(tmp / "data"), tmp / "arrays")
            result = train("basic_cnn", tmp / "arrays", TrainParams(), MODEL)
            mlflow.MlflowClient().set_registered_model_alias(MODEL, CHAMPION, result.version)

            serve_env = {
                **os.environ,
                "PYTHONPATH": str(ROOT / "src"),
                "SKIN_CANCER_MODEL_NAME": MODEL,
                "KERAS_BACKEND": "torch",  # MLflow's own server does not import our package
                "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            }
            processes.append(
                start(
                    [sys.executable, "-m", "skin_cancer.serving", "--port", str(ours_port)],
                    serve_env,
                    f"http://127.0.0.1:{ours_port}/health",
                    tmp / "ours.log",
                )
            )
            processes.append(
                start(
                    [
                        str(Path(sys.executable).parent / "mlflow"),
                        "models",
                        "serve",
                        "-m",
                        f"models:/{MODEL}@{CHAMPION}",
                        "--env-manager",
                        "local",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(theirs_port),
                    ],
                    serve_env,
                    f"http://127.0.0.1:{theirs_port}/health",
                    tmp / "theirs.log",
                )
            )

            buffer = io.BytesIO()
            lesion(np.random.default_rng(3), 64, malignant=True).save(buffer, "PNG")
            png = buffer.getvalue()
            tensor = json.dumps({"inputs": decode_image(png, 64)[None, ...].tolist()})
            session = requests.Session()

            def ours() -> None:
                response = session.post(
                    f"http://127.0.0.1:{ours_port}/predict",
                    files={"file": ("x.png", png, "image/png")},
                    timeout=30,
                )
                response.raise_for_status()

            def theirs() -> None:
                response = session.post(
                    f"http://127.0.0.1:{theirs_port}/invocations",
                    data=tensor,
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
                response.raise_for_status()

            rows = {}
            for name, send in (("ours (FastAPI)", ours), ("mlflow models serve", theirs)):
                for concurrency in (1, 8):
                    rows[name, concurrency] = measure(send, count, concurrency)
        finally:
            for process in processes:
                stop(process)

    print(f"{count} requests each, one 64x64 image per request, 2 cores, client in another process")
    for (name, concurrency), (rps, p50, p95) in rows.items():
        print(
            f"  {name:22s} concurrency {concurrency}: {rps:7.1f} req/s   "
            f"p50 {p50:6.1f} ms   p95 {p95:6.1f} ms"
        )
    for concurrency in (1, 8):
        ratio = rows["ours (FastAPI)", concurrency][0] / rows["mlflow models serve", concurrency][0]
        print(f"  ratio ours / mlflow, concurrency {concurrency}: {ratio:.1f}x   target >= 5x")


if __name__ == "__main__":
    main()
