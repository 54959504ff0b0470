"""The champion model behind a small HTTP API (FastAPI + uvicorn).

    python -m skin_cancer.serving [--host H] [--port P]

    POST /predict   an uploaded .jpg/.png -> {"label", "probabilities", "model_version"}
    GET  /health    200 with a model loaded, 503 without
    GET  /model     name, version and run of the model being served
    POST /reload    load the current champion now (the workflow calls it)

It loads `models:/<MODEL_NAME>@champion` at start and checks the alias every
SKIN_CANCER_RELOAD_SECONDS (default 30), so a new champion is served without a restart.
Settings come from the environment: MLFLOW_TRACKING_URI, SKIN_CANCER_MODEL_NAME,
SKIN_CANCER_MAX_UPLOAD_BYTES (default 10 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import threading
from dataclasses import dataclass

import keras
import mlflow
import numpy as np
from fastapi import FastAPI, File, HTTPException, UploadFile

from skin_cancer import CHAMPION, CLASSES, REGISTERED_MODEL
from skin_cancer.data import DatasetError, decode_image

log = logging.getLogger("skin_cancer.serving")
IMAGE_TYPES = ("image/jpeg", "image/png")


@dataclass(frozen=True)
class Served:
    model: keras.Model
    name: str
    version: str
    run_id: str
    image_size: int


class Champion:
    """The model being served, swapped whole (under a lock) when the alias moves."""

    def __init__(self, name: str):
        self.name = name
        self.current: Served | None = None
        self.lock = threading.Lock()

    def refresh(self) -> bool:
        """Load the champion if the alias points at another version; True if it changed."""
        client = mlflow.MlflowClient()
        target = client.get_model_version_by_alias(self.name, CHAMPION)
        if self.current and self.current.version == target.version:
            return False
        model = mlflow.keras.load_model(f"models:/{self.name}/{target.version}")
        served = Served(model, self.name, target.version, target.run_id, int(model.input_shape[1]))
        served.model(np.zeros((1, served.image_size, served.image_size, 3), np.float32))  # warm up
        with self.lock:
            self.current = served
        log.info("serving %s version %s (run %s)", self.name, target.version, target.run_id)
        return True

    def try_refresh(self) -> None:
        try:
            self.refresh()
        except Exception as error:  # no model registered yet, MLflow down: keep what we have
            log.warning("could not load the champion of %s: %s", self.name, error)

    def predict(self, image: np.ndarray) -> tuple[Served, np.ndarray]:
        with self.lock:
            served = self.current
        if served is None:
            raise HTTPException(503, "no champion model is loaded yet; train one (the workflow DAG) first")
        # Calling the model directly: model.predict per request costs ~20x more here.
        probabilities = keras.ops.convert_to_numpy(served.model(image[None, ...], training=False))[0]
        return served, probabilities


def create_app(
    model_name: str | None = None, reload_seconds: float | None = None, max_upload_bytes: int | None = None
) -> FastAPI:
    name = model_name or os.environ.get("SKIN_CANCER_MODEL_NAME") or REGISTERED_MODEL
    every = (
        reload_seconds
        if reload_seconds is not None
        else float(os.environ.get("SKIN_CANCER_RELOAD_SECONDS", 30))
    )
    limit = max_upload_bytes or int(os.environ.get("SKIN_CANCER_MAX_UPLOAD_BYTES", 10 * 1024 * 1024))
    champion = Champion(name)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(champion.try_refresh)

        async def watch() -> None:
            while True:
                await asyncio.sleep(every)
                await asyncio.to_thread(champion.try_refresh)

        watcher = asyncio.create_task(watch())
        yield
        watcher.cancel()

    app = FastAPI(title="Skin lesion classifier", lifespan=lifespan)

    @app.get("/health")
    def health() -> dict:
        if champion.current is None:
            raise HTTPException(503, "no champion model loaded")
        return {"status": "ok", "model_version": champion.current.version}

    @app.get("/model")
    def model_info() -> dict:
        current = champion.current
        if current is None:
            raise HTTPException(503, "no champion model loaded")
        return {
            "name": current.name,
            "version": current.version,
            "run_id": current.run_id,
            "alias": CHAMPION,
            "image_size": current.image_size,
            "classes": list(CLASSES),
        }

    @app.post("/reload")
    def reload() -> dict:
        try:
            changed = champion.refresh()
        except Exception as error:
            raise HTTPException(503, f"could not load the champion of {name}: {error}") from None
        return {"changed": changed, "version": champion.current.version}

    @app.post("/predict")
    def predict(file: UploadFile = File(...)) -> dict:  # noqa: B008 - FastAPI's way to declare an upload
        if file.content_type not in IMAGE_TYPES:
            raise HTTPException(415, f"send a JPEG or PNG image (got content type {file.content_type!r})")
        data = file.file.read(limit + 1)
        if not data:
            raise HTTPException(400, "the uploaded file is empty")
        if len(data) > limit:
            raise HTTPException(413, f"the image is larger than {limit} bytes")
        size = champion.current.image_size if champion.current else 64
        try:
            image = decode_image(data, size)
        except DatasetError as error:
            raise HTTPException(400, f"the upload is {error}") from None
        served, probabilities = champion.predict(image)
        return {
            "label": CLASSES[int(probabilities.argmax())],
            "probabilities": {name: float(p) for name, p in zip(CLASSES, probabilities, strict=True)},
            "model_version": served.version,
        }

    return app


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    parser = argparse.ArgumentParser(
        prog="python -m skin_cancer.serving", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
