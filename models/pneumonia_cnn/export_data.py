"""Reads a `dicom-etl export` (TFRecord shards of tf.train.Example, Split-train/validation/test) with tf.data.

Each record holds one instance tensor of the export's recipe (`tensor` bytes, `tensor/shape`, `tensor/dtype`)
and the study's label when known; unlabelled records are skipped (and counted). The classes are the model's
(`data.CLASSES`): a label outside them stops the run.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from . import data as D

FEATURES = {
    "tensor": tf.io.FixedLenFeature([], tf.string),
    "tensor/shape": tf.io.VarLenFeature(tf.int64),
    "tensor/dtype": tf.io.FixedLenFeature([], tf.string),
    "recipe/name": tf.io.FixedLenFeature([], tf.string),
    "recipe/hash": tf.io.FixedLenFeature([], tf.string),
    "patient_id": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.string, default_value=""),
}
SPLITS = {"train": "train", "val": "validation", "test": "test"}


@dataclass
class ExportSplit:
    images: np.ndarray  # (N, H, W, 1) float32, the recipe's tensors as exported
    labels: np.ndarray  # (N,) uint8, index into data.CLASSES
    patients: int
    unlabelled: int

    def counts(self) -> dict[int, int]:
        values, counts = np.unique(self.labels, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}


@dataclass
class Export:
    train: ExportSplit
    val: ExportSplit
    test: ExportSplit
    recipe: str
    recipe_hash: str
    metadata: dict = field(default_factory=dict)


def read_split(folder: Path, name: str, shape: tuple[int, ...]) -> tuple[ExportSplit, set[str], set[str]]:
    files = sorted(str(p) for p in (folder / f"Split-{name}").glob("data_tfrecord-*"))
    dataset = tf.data.TFRecordDataset(files).map(lambda r: tf.io.parse_single_example(r, FEATURES))
    images, labels, patients, hashes, recipes, unlabelled = [], [], set(), set(), set(), 0
    for ex in dataset.as_numpy_iterator():
        if ex["tensor/dtype"].decode() != "float32":
            raise SystemExit("the export's tensors are not float32")
        label = ex["label"].decode()
        hashes.add(ex["recipe/hash"].decode())
        recipes.add(ex["recipe/name"].decode())
        if not label:
            unlabelled += 1
            continue
        if label not in D.CLASSES:
            raise SystemExit(f"label {label!r} is not one of the model's classes {D.CLASSES}")
        x = np.frombuffer(ex["tensor"], dtype="<f4").reshape(np.asarray(ex["tensor/shape"]))
        images.append(x.reshape(shape))
        labels.append(D.CLASSES.index(label))
        patients.add(ex["patient_id"].decode())
    x = np.stack(images).astype(np.float32) if images else np.zeros((0,) + shape, np.float32)
    return ExportSplit(x, np.asarray(labels, np.uint8), len(patients), unlabelled), hashes, recipes


def load(folder: str | Path, shape: tuple[int, ...] = (28, 28, 1)) -> Export:
    folder = Path(folder)
    splits, hashes, recipes = {}, set(), set()
    for key, name in SPLITS.items():
        splits[key], h, r = read_split(folder, name, shape)
        hashes |= h
        recipes |= r
        if len(splits[key].labels) == 0 or len(np.unique(splits[key].labels)) < 2:
            raise SystemExit(f"the export's {name} split needs labelled images of both classes")
    if len(hashes) != 1 or len(recipes) != 1:
        raise SystemExit(f"the export mixes recipes {sorted(recipes)} / hashes {sorted(hashes)}")
    metadata = json.loads((folder / "dataset_metadata.json").read_text())
    return Export(splits["train"], splits["val"], splits["test"], recipes.pop(), hashes.pop(), metadata)
