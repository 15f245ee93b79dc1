"""The CNN, built only from layers the Swift worker implements (Sources/Inference)."""
from __future__ import annotations

import keras
from keras import layers


def build(widths: list[int], dropout: float = 0.3, input_size: int = 28) -> keras.Model:
    """Blocks of Conv3×3 (no bias) → BatchNorm → ReLU → MaxPool2×2, then GAP → Dropout → Dense(1) → sigmoid."""
    x = inputs = keras.Input((input_size, input_size, 1), name="image")
    for i, w in enumerate(widths):
        x = layers.Conv2D(w, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = layers.BatchNormalization(epsilon=1e-3, name=f"bn{i}")(x)
        x = layers.ReLU(name=f"relu{i}")(x)
        x = layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="pneumonia")(x)
    return keras.Model(inputs, outputs, name="pneumonia_cnn")
