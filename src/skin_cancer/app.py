"""Streamlit app: upload a skin-lesion image and see what the champion model says.

    streamlit run src/skin_cancer/app.py

It only talks to the serving API (SKIN_CANCER_API_URL, default http://127.0.0.1:8500), so its
environment stays light: no Keras, no PyTorch.
"""

from __future__ import annotations

import json
import os

import requests
import streamlit as st

API_URL = os.environ.get("SKIN_CANCER_API_URL", "http://127.0.0.1:8500").rstrip("/")


def served_model() -> tuple[dict | None, str | None]:
    """(model description, problem): what the API serves, or why we cannot tell."""
    try:
        response = requests.get(f"{API_URL}/model", timeout=5)
    except requests.RequestException:
        return None, (
            f"The model API at {API_URL} is not reachable. Start the platform (`make up`) or set "
            "SKIN_CANCER_API_URL to where the serving API runs."
        )
    if response.status_code == 503:
        return None, "The API has no champion model yet: run the `cnn_skin_cancer_workflow` DAG in Airflow."
    if not response.ok:
        return None, f"The model API answered {response.status_code}: {response.text[:200]}"
    return response.json(), None


def predict(data: bytes, name: str, content_type: str) -> tuple[dict | None, str | None]:
    try:
        response = requests.post(f"{API_URL}/predict", files={"file": (name, data, content_type)}, timeout=30)
    except requests.RequestException:
        return None, f"The model API at {API_URL} stopped answering; try again in a moment."
    if not response.ok:
        detail = response.json().get("detail") if "json" in response.headers.get("content-type", "") else ""
        return (
            None,
            f"The model API refused the image ({response.status_code}): {detail or response.text[:200]}",
        )
    return response.json(), None


def main() -> None:
    st.set_page_config(page_title="Skin lesion classifier", page_icon="🔬")
    st.title("Skin lesion classifier")
    model, problem = served_model()
    if problem:
        st.error(problem)
        return
    st.caption(
        f"Model {model['name']} version {model['version']} (alias {model['alias']}), served at {API_URL}"
    )

    uploaded = st.file_uploader("A dermatoscopic image", type=["jpg", "jpeg", "png"])
    if uploaded is None:
        st.info("Upload a .jpg or .png image to classify it as benign or malignant.")
        return
    data = uploaded.getvalue()
    # The API first: it says clearly what is wrong with a file that is no image, where
    # st.image would fail with a traceback.
    answer, problem = predict(data, uploaded.name, uploaded.type or "image/png")
    if problem:
        st.error(problem)
        return
    st.image(data, caption=uploaded.name, width=256)
    st.subheader(f"Prediction: {answer['label']}")
    for name, probability in sorted(answer["probabilities"].items(), key=lambda item: -item[1]):
        st.progress(probability, text=f"{name}: {probability:.1%}")
    result = {"file": uploaded.name, **answer, "model": model["name"]}
    st.download_button(
        "Download the result (JSON)",
        json.dumps(result, indent=2),
        file_name=f"{uploaded.name}.prediction.json",
        mime="application/json",
    )
    st.caption("A demonstration model, not a diagnosis.")


main()
