"""Resize and scale every image once, and keep the arrays as .npy (never pickle) in a
folder of the run's own, so that the trainings read arrays, not thousands of images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from skin_cancer import CLASSES
from skin_cancer.data import SPLITS, list_split, load_image


def preprocess(root: str, out_dir: Path, size: int = 64) -> dict:
    """Write `<split>_x.npy` (float32, N x size x size x 3, in [0, 1]) and `<split>_y.npy`
    (int64 labels) for train and test; return the sizes and class balance."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stats: dict = {"image_size": size}
    for split in SPLITS:
        listed = list_split(root, split)
        x = np.stack([load_image(path, size) for path in listed.paths])
        np.save(out_dir / f"{split}_x.npy", x, allow_pickle=False)
        np.save(out_dir / f"{split}_y.npy", listed.labels, allow_pickle=False)
        stats[f"{split}_images"] = len(listed.labels)
        for label, name in enumerate(CLASSES):
            stats[f"{split}_{name}"] = int((listed.labels == label).sum())
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats


def load_arrays(out_dir: Path) -> dict[str, np.ndarray]:
    return {
        f"{split}_{part}": np.load(out_dir / f"{split}_{part}.npy", allow_pickle=False)
        for split in SPLITS
        for part in ("x", "y")
    }


def log_stats(stats: dict) -> None:
    """Data sizes and class balance on the active MLflow run."""
    import mlflow

    mlflow.log_params({key: value for key, value in stats.items() if key.endswith(("images", "size"))})
    mlflow.log_metrics(
        {
            f"{split}_malignant_share": stats[f"{split}_malignant"] / stats[f"{split}_images"]
            for split in SPLITS
        }
    )
