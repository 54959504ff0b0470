"""The Streamlit app, driven by Streamlit's AppTest against the real serving API."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.support.platform_tools import ROOT, free_port

APP = str(ROOT / "src" / "skin_cancer" / "app.py")


def app_at(url: str, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("SKIN_CANCER_API_URL", url)
    return AppTest.from_file(APP, default_timeout=60).run()


@pytest.mark.parametrize("kind", ["benign", "malignant"])
def test_upload_shows_the_prediction_and_offers_the_json(
    serving_api: str, dataset_images: dict[str, Path], monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    app = app_at(serving_api, monkeypatch)
    image = dataset_images[kind]

    app.file_uploader[0].upload(
        image.name, image.read_bytes(), "image/png" if image.suffix == ".png" else "image/jpeg"
    )
    app.run()

    assert not app.exception and not app.error
    assert app.subheader[0].value == f"Prediction: {kind}"
    shares = [bar.proto.text for bar in app.get("progress")]
    assert len(shares) == 2 and shares[0].startswith(f"{kind}: ")
    download = app.get("download_button")[0].proto
    assert download.label == "Download the result (JSON)"


def test_before_an_upload_it_says_what_to_do(serving_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_at(serving_api, monkeypatch)

    assert not app.exception
    assert "Upload a .jpg or .png image" in app.info[0].value
    assert "version" in app.caption[0].value


def test_an_unreachable_api_is_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_at(f"http://127.0.0.1:{free_port()}", monkeypatch)

    assert not app.exception
    assert "is not reachable" in app.error[0].value and "SKIN_CANCER_API_URL" in app.error[0].value
    assert len(app.file_uploader) == 0


def test_a_refused_image_is_reported(serving_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_at(serving_api, monkeypatch)

    app.file_uploader[0].upload("fake.png", b"not an image at all", "image/png")
    app.run()

    # the API judges the bytes, not the name or the content type, and the app says why
    assert "refused the image (415)" in app.error[0].value
    assert "send a JPEG or PNG image" in app.error[0].value
