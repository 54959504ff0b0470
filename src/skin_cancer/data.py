"""Reading the dataset: `<root>/{train,test}/{benign,malignant}/*.{jpg,png}`, from a folder or
any fsspec URL (`s3://bucket/isic` when s3fs is installed), the Kaggle/ISIC layout as is."""

from __future__ import annotations

import io
from dataclasses import dataclass

import fsspec
import numpy as np
from PIL import Image

from skin_cancer import CLASSES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "test")


class DatasetError(ValueError):
    """The dataset is not where or what it should be; the message says what to fix."""


@dataclass(frozen=True)
class Split:
    paths: list[str]
    labels: np.ndarray  # int64, CLASSES.index(folder)


def list_split(root: str, split: str) -> Split:
    """Every image of one split with its label, in a stable order."""
    fs, base = fsspec.core.url_to_fs(root)
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(CLASSES):
        folder = f"{base.rstrip('/')}/{split}/{name}"
        if not fs.isdir(folder):
            raise DatasetError(
                f"{root}/{split}/{name} is missing: the dataset needs "
                f"{{train,test}}/{{{','.join(CLASSES)}}}/ folders of .jpg or .png images"
            )
        found = sorted(p for p in fs.ls(folder, detail=False) if p.lower().endswith(IMAGE_SUFFIXES))
        if not found:
            raise DatasetError(f"{root}/{split}/{name} has no .jpg or .png images")
        paths += [fs.unstrip_protocol(p) if "://" in root else p for p in found]
        labels += [label] * len(found)
    return Split(paths, np.asarray(labels, dtype=np.int64))


def load_image(path: str, size: int) -> np.ndarray:
    """One image as float32 RGB in [0, 1], resized to size x size."""
    with fsspec.open(path, "rb") as handle:
        data = handle.read()
    return decode_image(data, size)


def decode_image(data: bytes, size: int) -> np.ndarray:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as error:  # PIL raises many kinds for bad input
        raise DatasetError(f"not a readable image: {error}") from None
    image = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.float32) / 255.0
