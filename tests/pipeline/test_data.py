"""Data and preprocessing: right labels for both classes, the real layout from a folder or
an fsspec URL, clear errors, arrays without pickle."""

from __future__ import annotations

import shutil
from pathlib import Path

import fsspec
import numpy as np
import pytest

from skin_cancer import CLASSES
from skin_cancer.data import DatasetError, decode_image, list_split
from skin_cancer.preprocess import load_arrays, preprocess
from skin_cancer.synthetic import generate


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_image_is_labelled_by_its_class_folder(dataset: Path, split: str) -> None:
    listed = list_split(str(dataset), split)

    assert {Path(path).parent.name for path in listed.paths} == set(CLASSES)
    for path, label in zip(listed.paths, listed.labels, strict=True):
        assert CLASSES[label] == Path(path).parent.name, path
    assert sorted(set(listed.labels.tolist())) == [0, 1]  # benign 0, malignant 1, both present
    assert (listed.labels == 0).sum() == (listed.labels == 1).sum()


def test_both_formats_are_read_and_other_files_ignored(dataset: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)
    (copy / "train" / "benign" / "notes.txt").write_text("not an image")

    listed = list_split(str(copy), "train")

    assert {Path(p).suffix for p in listed.paths} == {".jpg", ".png"}
    assert not any(p.endswith("notes.txt") for p in listed.paths)


def test_a_missing_class_folder_is_a_clear_error(dataset: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(dataset, copy)
    shutil.rmtree(copy / "test" / "malignant")

    with pytest.raises(DatasetError, match=r"test/malignant is missing: the dataset needs"):
        list_split(str(copy), "test")


def test_an_fsspec_url_reads_the_same_dataset(dataset: Path) -> None:
    memory = fsspec.filesystem("memory")
    for path in dataset.rglob("*.*"):
        memory.pipe(f"/isic/{path.relative_to(dataset)}", path.read_bytes())

    listed = list_split("memory://isic", "train")
    local = list_split(str(dataset), "train")

    assert listed.paths[0].startswith("memory://")
    assert listed.labels.tolist() == local.labels.tolist()


def test_a_file_that_is_not_an_image_is_refused() -> None:
    with pytest.raises(DatasetError, match="not a readable image"):
        decode_image(b"GIF? no, plain text", 64)


def test_synthetic_data_is_deterministic(tmp_path: Path) -> None:
    generate(tmp_path / "a", train=2, test=1, seed=7)
    generate(tmp_path / "b", train=2, test=1, seed=7)

    for path in (tmp_path / "a").rglob("*.png"):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()


def test_synthetic_classes_are_visually_separable(dataset: Path, tmp_path: Path) -> None:
    stats = preprocess(str(dataset), tmp_path / "arrays", size=64)
    arrays = load_arrays(tmp_path / "arrays")
    # The darkness of the lesion's centre alone tells the classes apart.
    centre = arrays["train_x"][:, 24:40, 24:40, :].mean(axis=(1, 2, 3))
    benign, malignant = centre[arrays["train_y"] == 0], centre[arrays["train_y"] == 1]

    assert stats["train_benign"] == stats["train_malignant"] == 40
    assert benign.min() > malignant.max()


def test_preprocessing_writes_scaled_arrays_without_pickle(dataset: Path, tmp_path: Path) -> None:
    stats = preprocess(str(dataset), tmp_path / "run-1", size=32)
    arrays = load_arrays(tmp_path / "run-1")  # np.load(allow_pickle=False) inside

    assert arrays["train_x"].shape == (80, 32, 32, 3) and arrays["train_x"].dtype == np.float32
    assert arrays["train_x"].min() >= 0.0 and arrays["train_x"].max() <= 1.0
    assert arrays["test_y"].dtype == np.int64 and len(arrays["test_y"]) == 40
    assert stats == {
        "image_size": 32,
        "train_images": 80,
        "train_benign": 40,
        "train_malignant": 40,
        "test_images": 40,
        "test_benign": 20,
        "test_malignant": 20,
    }
    assert sorted(p.name for p in (tmp_path / "run-1").iterdir()) == [
        "stats.json",
        "test_x.npy",
        "test_y.npy",
        "train_x.npy",
        "train_y.npy",
    ]
