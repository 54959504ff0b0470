"""The champion model behind a small HTTP API (FastAPI + uvicorn).

    python -m skin_cancer.serving [--host H] [--port P]

    POST /predict   an uploaded .jpg/.png -> {"label", "probabilities", "model_version"}
    GET  /health    200 with a model loaded, 503 without
    GET  /model     name, version and run of the model being served
    POST /reload    load the current champion now (the workflow calls it)

It loads `models:/<MODEL_NAME>@champion` at start and checks the alias every
SKIN_CANCER_RELOAD_SECONDS (default 30), so a new champion is served without a restart.
Settings come from the environment: MLFLOW_TRACKING_URI, SKIN_CANCER_MODEL_NAME,
SKIN_CANCER_MAX_UPLOAD_BYTES (default 10 MiB) and SKIN_CANCER_MAX_PIXELS (default 25 megapixels,
a 24-megapixel camera's photo; the model sees 64x64 anyway).

An upload is judged by its bytes, not by what the client says it is: the first bytes must be a
JPEG's or a PNG's (else 415), so a JPEG sent as text/plain is classified and a GIF sent as
image/png is not, and no other Pillow format is ever opened. Its width x height is read from the
header and refused over SKIN_CANCER_MAX_PIXELS (413) before any pixel is decoded, since a PNG of
a few KB can declare 13000 x 13000 pixels and cost ~850 MiB to decode. A body larger
than SKIN_CANCER_MAX_UPLOAD_BYTES plus room for the form's own headers is refused (413) before it
is read: up front by its Content-Length, or once that many bytes have come when it is sent
chunked. Empty, truncated or corrupt images get a 400; none of these is a 500.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import threading
from dataclasses import dataclass

import keras
import mlflow
import numpy as np
from fastapi import FastAPI, File, HTTPException, UploadFile
from fastapi.responses import JSONResponse
from PIL import Image
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from skin_cancer import CHAMPION, CLASSES, REGISTERED_MODEL
from skin_cancer.data import DatasetError, decode_image

log = logging.getLogger("skin_cancer.serving")
# The magic numbers the formats we open start with; the content type a client sends is not asked.
IMAGE_SIGNATURES = {"JPEG": b"\xff\xd8\xff", "PNG": b"\x89PNG\r\n\x1a\n"}
SEND_JPEG_OR_PNG = "send a JPEG or PNG image"
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 25_000_000
FORM_OVERHEAD_BYTES = 16 * 1024  # the multipart boundaries and part headers around the image


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


def image_format(data: bytes) -> str | None:
    """The format of IMAGE_SIGNATURES the file starts with, None for anything else."""
    return next((name for name, signature in IMAGE_SIGNATURES.items() if data.startswith(signature)), None)


def too_many_pixels(pixels: str, max_pixels: int) -> HTTPException:
    return HTTPException(
        413,
        f"the image has {pixels}, over the limit of {max_pixels} pixels (SKIN_CANCER_MAX_PIXELS): "
        "send a smaller one",
    )


def check_image(data: bytes, max_pixels: int) -> None:
    """Refuse what is not a JPEG or PNG of at most max_pixels, reading only the header: Image.open
    decodes no pixel, so a decompression bomb is stopped before it costs any memory."""
    found = image_format(data)
    if found is None:
        raise HTTPException(
            415, f"{SEND_JPEG_OR_PNG}: the uploaded bytes are neither, whatever their content type"
        )
    try:
        with Image.open(io.BytesIO(data), formats=[found]) as image:
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own limit is above ours; the warning is raised only when warnings are errors.
        raise too_many_pixels("more pixels than Pillow will open", max_pixels) from None
    except Exception:  # PIL raises many kinds for a broken header
        raise HTTPException(400, f"the upload starts like a {found} but its header is broken") from None
    if width * height > max_pixels:
        raise too_many_pixels(f"{width}x{height} pixels", max_pixels)


class RequestBodyLimit:
    """Refuse a request body over max_bytes before FastAPI spools it: up front when its
    Content-Length says so, else (chunked) as soon as the bytes received pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes
        self.message = (
            f"the request body is over the limit of {max_bytes} bytes "
            f"(SKIN_CANCER_MAX_UPLOAD_BYTES plus the form's headers): {SEND_JPEG_OR_PNG} of at most that size"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif self.declared_length(scope) > self.max_bytes:
            await JSONResponse({"detail": self.message}, 413)(scope, receive, send)
        else:
            await self.app(scope, self.counting(receive), send)

    @staticmethod
    def declared_length(scope: Scope) -> int:
        """The Content-Length, 0 without one (uvicorn refuses a malformed one itself)."""
        value = dict(scope["headers"]).get(b"content-length", b"0")
        return int(value) if value.isdigit() else 0

    def counting(self, receive: Receive) -> Receive:
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                # An HTTPException: FastAPI passes it on from the form parser instead of making it a 400.
                raise HTTPException(413, self.message)
            return message

        return receive_within_limit


def create_app(
    model_name: str | None = None,
    reload_seconds: float | None = None,
    max_upload_bytes: int | None = None,
    max_pixels: int | None = None,
) -> FastAPI:
    name = model_name or os.environ.get("SKIN_CANCER_MODEL_NAME") or REGISTERED_MODEL
    every = (
        reload_seconds
        if reload_seconds is not None
        else float(os.environ.get("SKIN_CANCER_RELOAD_SECONDS", 30))
    )
    limit = max_upload_bytes or int(os.environ.get("SKIN_CANCER_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES))
    pixels = max_pixels or int(os.environ.get("SKIN_CANCER_MAX_PIXELS", DEFAULT_MAX_PIXELS))
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
    app.add_middleware(RequestBodyLimit, max_bytes=limit + FORM_OVERHEAD_BYTES)

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
        data = file.file.read(limit + 1)
        if not data:
            raise HTTPException(400, "the uploaded file is empty")
        if len(data) > limit:
            raise HTTPException(413, f"the image is larger than {limit} bytes")
        check_image(data, pixels)
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
