"""The three model kinds. Builders only: data in, compiled model out."""

from __future__ import annotations

import keras
from keras import layers

from skin_cancer import CLASSES

KINDS = ("basic_cnn", "crossval", "resnet50")  # crossval: k-fold basic_cnn, then a final fit


def basic_cnn(input_shape: tuple[int, int, int]) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input(input_shape),
            layers.Conv2D(16, 3, activation="relu", padding="same"),
            layers.MaxPooling2D(),
            layers.Conv2D(32, 3, activation="relu", padding="same"),
            layers.MaxPooling2D(),
            layers.Conv2D(64, 3, activation="relu", padding="same"),
            layers.GlobalAveragePooling2D(),
            layers.Dense(len(CLASSES), activation="softmax"),
        ],
        name="basic_cnn",
    )


def resnet50(input_shape: tuple[int, int, int], weights: str | None = None) -> keras.Model:
    """ResNet50 from scratch by default; `weights` may name a local weights file for the
    convolutional base (nothing is downloaded)."""
    base = keras.applications.ResNet50(
        include_top=False, weights=weights, input_shape=input_shape, pooling="avg"
    )
    outputs = layers.Dense(len(CLASSES), activation="softmax")(base.output)
    return keras.Model(base.input, outputs, name="resnet50")


def build(
    kind: str, input_shape: tuple[int, int, int], learning_rate: float, weights: str | None = None
) -> keras.Model:
    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}: choose one of {', '.join(KINDS)}")
    model = resnet50(input_shape, weights) if kind == "resnet50" else basic_cnn(input_shape)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
