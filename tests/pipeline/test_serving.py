"""The serving API as a real uvicorn process over a real MLflow registry."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import struct
import sys
import time
import zlib
from pathlib import Path
from urllib.parse import urlsplit

import mlflow
import pytest
import requests
from PIL import Image

import skin_cancer
from skin_cancer import CHAMPION, CLASSES
from skin_cancer.data import list_split
from skin_cancer.preprocess import preprocess
from skin_cancer.train import TrainParams, train

from .servers import free_port, start_logged, stop, wait_until_healthy

SRC = str(Path(skin_cancer.__file__).resolve().parents[1])  # this repository's src/

MODEL = "serving_test_model"
UPLOAD_LIMIT = 200_000
PIXEL_LIMIT = 1_000_000
BODY_LIMIT = UPLOAD_LIMIT + 16 * 1024  # the upload limit plus the server's room for the form's headers
BOUNDARY = "serving-test-boundary"


@pytest.fixture(scope="module")
def versions(mlflow_server: str, dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    arrays = tmp_path_factory.mktemp("serving-arrays")
    preprocess(str(dataset), arrays, size=64)
    mlflow.set_experiment("serving-tests")
    first = train("basic_cnn", arrays, TrainParams(), MODEL)
    second = train("basic_cnn", arrays, TrainParams(seed=1), MODEL)
    mlflow.MlflowClient().set_registered_model_alias(MODEL, CHAMPION, first.version)
    return [first.version, second.version]


@pytest.fixture(scope="module")
def server(versions: list[str], mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    port = free_port()
    log = tmp_path_factory.mktemp("serving") / "serving.log"
    env = {
        **os.environ,
        "PYTHONPATH": SRC,
        "MLFLOW_TRACKING_URI": mlflow_server,
        "SKIN_CANCER_MODEL_NAME": MODEL,
        "SKIN_CANCER_RELOAD_SECONDS": "1",
        "SKIN_CANCER_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "SKIN_CANCER_MAX_PIXELS": str(PIXEL_LIMIT),
    }
    env.pop("KERAS_BACKEND", None)
    process = start_logged([sys.executable, "-m", "skin_cancer.serving", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    wait_until_healthy(f"{url}/health", process, log)
    yield url
    stop(process)


def upload(
    url: str, data: bytes, name: str = "lesion.png", content_type: str = "image/png"
) -> requests.Response:
    return requests.post(f"{url}/predict", files={"file": (name, data, content_type)}, timeout=30)


def test_held_out_images_are_classified_correctly(server: str, dataset: Path) -> None:
    listed = list_split(str(dataset), "test")
    right = 0
    for path, label in zip(listed.paths, listed.labels, strict=True):
        content_type = "image/png" if path.endswith(".png") else "image/jpeg"
        answer = upload(server, Path(path).read_bytes(), Path(path).name, content_type).json()
        assert set(answer["probabilities"]) == set(CLASSES)
        assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        right += answer["label"] == CLASSES[label]

    assert right / len(listed.labels) >= 0.9


def test_health_and_model_describe_the_champion(server: str, versions: list[str]) -> None:
    assert requests.get(f"{server}/health", timeout=10).json()["status"] == "ok"
    model = requests.get(f"{server}/model", timeout=10).json()

    assert model["name"] == MODEL and model["alias"] == CHAMPION
    assert model["version"] == mlflow.MlflowClient().get_model_version_by_alias(MODEL, CHAMPION).version
    assert model["run_id"]


def png_bytes(size: int = 64) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 150, 120)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data, content_type, status",
    [
        (b"just some text", "text/plain", 415),
        (b"", "image/png", 400),
        (b"\x89PNG\r\n\x1a\n but not really an image", "image/png", 400),
        (os.urandom(UPLOAD_LIMIT + 1), "image/jpeg", 413),
    ],
    ids=["plain-text", "empty", "png-signature-then-garbage", "too-large"],
)
def test_bad_input_gets_a_4xx_with_a_message(
    server: str, data: bytes, content_type: str, status: int
) -> None:
    response = upload(server, data, content_type=content_type)

    assert response.status_code == status
    assert response.json()["detail"]
    assert requests.get(f"{server}/health", timeout=10).status_code == 200  # still serving


def test_a_request_without_a_file_is_refused(server: str) -> None:
    response = requests.post(f"{server}/predict", data={"image": "x"}, timeout=10)

    assert response.status_code == 422


def answer(response: requests.Response) -> tuple[int, str]:
    """The status and the message of a refusal (or the whole body of anything else)."""
    return response.status_code, response.json().get("detail", response.text)


def assert_refused(server: str, status_and_detail: tuple[int, str], status: int, words: str) -> None:
    """The status, a message saying why, and a server that still answers afterwards."""
    got, detail = status_and_detail
    assert got == status, detail
    assert words in detail
    assert requests.get(f"{server}/health", timeout=10).status_code == 200


def blank_png(width: int, height: int) -> bytes:
    """A valid black 1-bit PNG written by hand: a few KB however many pixels it declares, which is
    what makes a decompression bomb (Pillow would spend seconds and hundreds of MiB decoding it)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, greyscale
    rows = (b"\0" * (1 + (width + 7) // 8)) * height  # each row: filter type 0, then the bits
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def encoded(image_format: str, noise: bool = False) -> bytes:
    buffer = io.BytesIO()
    pixels = os.urandom(64 * 64 * 3) if noise else bytes([200, 150, 120]) * 64 * 64
    Image.frombytes("RGB", (64, 64), pixels).save(buffer, image_format)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "width, height",
    [(1100, 1000), (13000, 13000), (20000, 20000)],
    ids=["just-over-our-limit", "pillow-only-warns", "pillow-refuses-too"],
)
def test_a_decompression_bomb_is_refused_by_its_header(server: str, width: int, height: int) -> None:
    bomb = blank_png(width, height)
    assert len(bomb) < UPLOAD_LIMIT

    response = upload(server, bomb)

    assert_refused(server, answer(response), 413, f"over the limit of {PIXEL_LIMIT} pixels")


@pytest.mark.parametrize("image_format", ["GIF", "BMP", "TIFF", "WEBP"])
def test_only_jpeg_and_png_are_opened_whatever_the_content_type(server: str, image_format: str) -> None:
    response = upload(server, encoded(image_format), content_type="image/png")

    assert_refused(server, answer(response), 415, "send a JPEG or PNG image")


def test_a_jpeg_sent_as_text_plain_is_classified_by_its_bytes(server: str) -> None:
    response = upload(server, encoded("JPEG"), "lesion.txt", "text/plain")

    assert response.status_code == 200
    assert response.json()["label"] in CLASSES


def test_a_truncated_png_gets_a_400(server: str) -> None:
    png = encoded("PNG", noise=True)

    response = upload(server, png[: len(png) // 2])

    assert_refused(server, answer(response), 400, "truncated")


def start_upload(server: str, length_header: tuple[str, str]) -> http.client.HTTPConnection:
    """A POST /predict whose headers are sent and whose body is up to the caller."""
    address = urlsplit(server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=60)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    connection.putheader(*length_header)
    connection.endheaders()
    return connection


def read_answer(connection: http.client.HTTPConnection) -> tuple[int, str]:
    response = connection.getresponse()
    body = response.read()
    return response.status, json.loads(body).get("detail", body.decode())


def test_a_body_declared_over_the_limit_is_refused_before_it_is_sent(server: str) -> None:
    with contextlib.closing(start_upload(server, ("Content-Length", str(10 * 1024**3)))) as connection:
        refusal = read_answer(connection)  # no body follows: a server waiting for it would never answer

    assert_refused(server, refusal, 413, f"the request body is over the limit of {BODY_LIMIT} bytes")


def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(server: str) -> None:
    part = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="lesion.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    pieces = [part] + [os.urandom(8192)] * (BODY_LIMIT // 8192 + 1)
    assert sum(map(len, pieces)) > BODY_LIMIT

    with contextlib.closing(start_upload(server, ("Transfer-Encoding", "chunked"))) as connection:
        for piece in pieces:
            connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        refusal = read_answer(connection)  # the last chunk never comes: a server waiting for it would hang

    assert_refused(server, refusal, 413, f"the request body is over the limit of {BODY_LIMIT} bytes")


def test_a_new_champion_is_served_without_a_restart(server: str, versions: list[str]) -> None:
    first, second = versions
    assert upload(server, png_bytes()).json()["model_version"] == first

    mlflow.MlflowClient().set_registered_model_alias(MODEL, CHAMPION, second)

    deadline = time.monotonic() + 30
    while requests.get(f"{server}/model", timeout=10).json()["version"] != second:
        assert time.monotonic() < deadline, "the new champion was not picked up"
        time.sleep(0.2)
    assert upload(server, png_bytes()).json()["model_version"] == second
    assert requests.post(f"{server}/reload", timeout=30).json() == {"changed": False, "version": second}
