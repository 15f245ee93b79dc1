"""PneumoniaMNIST loading: rebuilds the official 4,708-image train split from two partial copies.

The folder given on the command line holds (see its MANIFEST.tsv):
  varun19424-pneumonia_mnist/pneumoniamnist.npz   train: every pneumonia image, 388 of the normals;
                                                  val and test: the official splits
  aksufatih-snn-medmnist/pneumoniamnist.npz       train: every normal image, 1,214 of the pneumonia
The official train split itself holds a few byte-identical images, so the merge is a multiset union
keyed on (pixels, label): an image enters as many times as the copy that holds it most often.
"""
from __future__ import annotations

import hashlib
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPOSITORY = Path(__file__).resolve().parents[2]
RECIPE_PATH = REPOSITORY / "etl" / "normalize" / "cxr-28.yaml"
sys.path.insert(0, str(REPOSITORY / "scripts"))
import normalize_reference as R  # noqa: E402  (the Python reference of the normalisation recipes)

FULL = "varun19424-pneumonia_mnist/pneumoniamnist.npz"
BALANCED = "aksufatih-snn-medmnist/pneumoniamnist.npz"
EXPECTED_TRAIN = {0: 1214, 1: 3494}
EXPECTED_VAL = {0: 135, 1: 389}
EXPECTED_TEST = {0: 234, 1: 390}
CLASSES = ["normal", "pneumonia"]


@dataclass
class Split:
    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) uint8, 1 = pneumonia

    def counts(self) -> dict[int, int]:
        values, counts = np.unique(self.labels, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts)}

    def sha256(self) -> str:
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images, dtype=np.uint8).tobytes())
        h.update(np.ascontiguousarray(self.labels, dtype=np.uint8).tobytes())
        return h.hexdigest()


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    sources: dict[str, str]  # relative path -> sha256 of the file
    train_duplicates: int  # byte-identical repeats inside the merged train split


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _key(image: np.ndarray, label: int) -> bytes:
    return image.tobytes() + bytes([label])


def merge_train(full: Split, balanced: Split) -> Split:
    """Multiset union of two partial train splits, in a fixed order (first copy, then the extras)."""
    have = Counter(_key(x, int(y)) for x, y in zip(full.images, full.labels))
    seen_b: Counter[bytes] = Counter()
    extra = []
    for i, (x, y) in enumerate(zip(balanced.images, balanced.labels)):
        k = _key(x, int(y))
        seen_b[k] += 1
        if seen_b[k] > have[k]:
            extra.append(i)
    images = np.concatenate([full.images, balanced.images[extra]])
    labels = np.concatenate([full.labels, balanced.labels[extra]])
    return Split(images, labels)


def load(folder: str | Path) -> Dataset:
    folder = Path(folder)
    a = np.load(folder / FULL)
    b = np.load(folder / BALANCED)
    split = lambda d, s: Split(d[f"{s}_images"].astype(np.uint8), d[f"{s}_labels"].reshape(-1).astype(np.uint8))
    train = merge_train(split(a, "train"), split(b, "train"))
    val, test = split(a, "val"), split(a, "test")
    for name, s, want in (("train", train, EXPECTED_TRAIN), ("val", val, EXPECTED_VAL), ("test", test, EXPECTED_TEST)):
        if s.counts() != want:
            raise SystemExit(f"{name}: class counts {s.counts()} differ from the official {want}")
    keys = Counter(_key(x, int(y)) for x, y in zip(train.images, train.labels))
    duplicates = sum(c - 1 for c in keys.values())
    sources = {FULL: _file_sha256(folder / FULL), BALANCED: _file_sha256(folder / BALANCED)}
    return Dataset(train, val, test, sources, duplicates)


def to_input(images: np.ndarray, recipe_path: str | Path = RECIPE_PATH) -> np.ndarray:
    """The model's input, (N, 28, 28, 1) float32: the `cxr-28` recipe (etl/normalize/cxr-28.yaml) run by the
    Python reference of the normalisation stages on each image as what it is, 8-bit MONOCHROME2 stored values
    without a window. The worker is served the same recipe's tensors from DICOM files; for these images both
    are grey level / 255 (the recipe's bit-range fallback), which the normalisation tests check bit for bit
    against the Swift recipe on the training images."""
    recipe = R.load_recipe(str(recipe_path))
    attributes = R.pixel_module("MONOCHROME2", 8)
    return np.stack([R.normalize_stored(x, attributes, recipe) for x in images])[..., None].astype(np.float32)


def recipe_hash(recipe_path: str | Path = RECIPE_PATH) -> str:
    """The content hash of the recipe `to_input` runs (equal to the Swift `Recipe.contentHash`)."""
    return R.recipe_hash(str(recipe_path))
