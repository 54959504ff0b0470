"""Train one model kind on preprocessed arrays and track everything in MLflow: the
parameters, per-epoch metrics, test accuracy, a confusion matrix and a training curve,
and the model itself (with a signature and explicit requirements), registered as a new
version of the one registered model the champion is chosen from.

    python -m skin_cancer.train --kind basic_cnn --arrays DIR [--epochs N] ...
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, replace
from importlib.metadata import version
from pathlib import Path

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
import numpy as np
from mlflow.models import infer_signature

from skin_cancer import CLASSES, REGISTERED_MODEL
from skin_cancer.models import KINDS, build
from skin_cancer.preprocess import load_arrays


@dataclass(frozen=True)
class TrainParams:
    """Everything a training depends on, logged as the run's parameters."""

    epochs: int = 10
    batch_size: int = 16
    learning_rate: float = 3e-3  # 1e-3 stays at chance for 10 epochs on small data; 5e-3 is unstable
    folds: int = 3  # crossval only
    seed: int = 0
    resnet_weights: str | None = None  # a local weights file; None trains from scratch


@dataclass(frozen=True)
class TrainResult:
    kind: str
    run_id: str
    version: str
    test_accuracy: float


class EpochMetrics(keras.callbacks.Callback):
    """Loss and accuracy of every epoch, as MLflow metrics with the epoch as step."""

    def __init__(self, prefix: str = ""):
        super().__init__()
        self.prefix = prefix

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        mlflow.log_metrics(
            {f"{self.prefix}{key}": float(value) for key, value in (logs or {}).items()}, step=epoch
        )


def fit(
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    params: TrainParams,
    prefix: str = "",
    validation: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[keras.Model, dict]:
    keras.utils.set_random_seed(params.seed)
    model = build(kind, tuple(x.shape[1:]), params.learning_rate, params.resnet_weights)
    history = model.fit(
        x,
        y,
        epochs=params.epochs,
        batch_size=params.batch_size,
        validation_data=validation,
        shuffle=True,
        verbose=0,
        callbacks=[EpochMetrics(prefix)],
    )
    return model, history.history


def cross_validate(x: np.ndarray, y: np.ndarray, params: TrainParams) -> list[float]:
    """Accuracy of basic_cnn on each of `folds` stratified folds (deterministic by seed)."""
    rng = np.random.default_rng(params.seed)
    fold_of = np.empty(len(y), dtype=int)
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        fold_of[members] = np.arange(len(members)) % params.folds
    accuracies = []
    for fold in range(params.folds):
        held = fold_of == fold
        model, _ = fit("crossval", x[~held], y[~held], params, prefix=f"fold{fold}_")
        accuracies.append(float(model.evaluate(x[held], y[held], verbose=0)[1]))
    return accuracies


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    matrix = np.zeros((len(CLASSES), len(CLASSES)), dtype=int)
    np.add.at(matrix, (y_true, y_pred), 1)
    return matrix


def confusion_figure(matrix: np.ndarray, title: str) -> plt.Figure:
    figure, axes = plt.subplots(figsize=(4, 4))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(CLASSES)), CLASSES)
    axes.set_yticks(range(len(CLASSES)), CLASSES)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    for (row, col), count in np.ndenumerate(matrix):
        axes.text(col, row, str(count), ha="center", va="center")
    figure.tight_layout()
    return figure


def curve_figure(history: dict, title: str) -> plt.Figure:
    figure, axes = plt.subplots(figsize=(5, 3.5))
    for key in ("loss", "accuracy"):
        axes.plot(history[key], label=key)
    axes.set_xlabel("epoch")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    return figure


def pip_requirements() -> list[str]:
    return [f"{name}=={version(name)}" for name in ("keras", "torch", "numpy", "mlflow")]


def train(
    kind: str,
    arrays_dir: Path,
    params: TrainParams,
    registered_model: str = REGISTERED_MODEL,
    tags: dict[str, str] | None = None,
) -> TrainResult:
    """One MLflow run: fit (cross-validating first for `crossval`), evaluate, log, register."""
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}: choose one of {', '.join(KINDS)}")
    arrays = load_arrays(arrays_dir)
    x, y = arrays["train_x"], arrays["train_y"]
    with mlflow.start_run(run_name=kind, tags={"model_kind": kind, **(tags or {})}) as run:
        mlflow.log_params({"model_kind": kind, "arrays": str(arrays_dir), **asdict(params)})
        if kind == "crossval":
            accuracies = cross_validate(x, y, params)
            mlflow.log_metrics(
                {"cv_accuracy_mean": float(np.mean(accuracies)), "cv_accuracy_std": float(np.std(accuracies))}
            )
            for fold, accuracy in enumerate(accuracies):
                mlflow.log_metric("cv_fold_accuracy", accuracy, step=fold)
        model, history = fit(kind, x, y, params)  # crossval: the final model, on all training data

        probabilities = model.predict(arrays["test_x"], verbose=0)
        predicted = probabilities.argmax(axis=1)
        test_accuracy = float((predicted == arrays["test_y"]).mean())
        mlflow.log_metric("test_accuracy", test_accuracy)
        matrix = confusion(arrays["test_y"], predicted)
        mlflow.log_dict({"classes": list(CLASSES), "matrix": matrix.tolist()}, "confusion_matrix.json")
        mlflow.log_figure(confusion_figure(matrix, f"{kind}: test set"), "confusion_matrix.png")
        mlflow.log_figure(curve_figure(history, f"{kind}: training"), "training_curve.png")
        plt.close("all")

        example = arrays["test_x"][:2]
        info = mlflow.keras.log_model(
            model,
            name="model",
            registered_model_name=registered_model,
            signature=infer_signature(example, model.predict(example, verbose=0)),
            pip_requirements=pip_requirements(),
        )
        version_number = str(info.registered_model_version)
        client = mlflow.MlflowClient()
        client.set_model_version_tag(registered_model, version_number, "model_kind", kind)
        client.set_model_version_tag(
            registered_model, version_number, "test_accuracy", f"{test_accuracy:.6f}"
        )
        return TrainResult(kind, run.info.run_id, version_number, test_accuracy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m skin_cancer.train", description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--arrays", type=Path, required=True, help="folder written by skin_cancer.preprocess")
    for name, default in asdict(TrainParams()).items():
        kind = type(default) if default is not None else str
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default)
    args = parser.parse_args(argv)
    params = replace(TrainParams(), **{name: getattr(args, name) for name in asdict(TrainParams())})
    result = train(args.kind, args.arrays, params)
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
