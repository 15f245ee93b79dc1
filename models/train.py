#!/usr/bin/env python3
"""Trains, evaluates and exports the PneumoniaMNIST CNN (models/trained_models/pneumonia-cnn/<version>/).

    python models/train.py --data ../shared/data/medmnist --out models/trained_models/pneumonia-cnn/1.0.0
    python models/train.py --export EXPORT_DIR --out DIR --version 1.1.0     # from `dicom-etl export` (TFRecord)
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

from pneumonia_cnn import data as D, export_data as E, metrics as M, weights_format as W  # noqa: E402
from pneumonia_cnn.model import build  # noqa: E402

NAME = "pneumonia-cnn"
RECIPE = "cxr-28"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="folder holding the PneumoniaMNIST copies (see data.py)")
    source.add_argument("--export", help="a `dicom-etl export --recipe cxr-28 --task pneumonia` folder (TFRecord shards)")
    p.add_argument("--out", required=True, help="version folder to write")
    p.add_argument("--version", default=None, help="model version (default: the --out folder's name)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--widths", default="32,64,64,64")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--patience", type=int, default=12)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--shift", type=int, default=2, help="random translation in pixels (augmentation)")
    p.add_argument("--rotate", type=float, default=0.0, help="random rotation, degrees (augmentation)")
    p.add_argument("--zoom", type=float, default=0.0, help="random zoom fraction (augmentation)")
    p.add_argument("--reference-count", type=int, default=128)
    return p.parse_args()


def augment(shift: int):
    def f(x, y):
        if shift:
            x = tf.pad(x, [[shift, shift], [shift, shift], [0, 0]], mode="REFLECT")
            x = tf.image.random_crop(x, [28, 28, 1])
        x = tf.image.random_brightness(x, 0.05)
        x = tf.image.random_contrast(x, 0.9, 1.1)
        return tf.clip_by_value(x, 0.0, 1.0), y
    return f


class BestOnValAUC(keras.callbacks.Callback):
    """Exact validation AUC each epoch; keeps the best weights and stops after `patience` epochs without gain."""

    def __init__(self, x, y, patience):
        super().__init__()
        self.x, self.y, self.patience = x, y, patience
        self.best, self.best_epoch, self.best_weights, self.history = -1.0, -1, None, []

    def on_epoch_end(self, epoch, logs=None):
        p = self.model(self.x, training=False).numpy().ravel()
        a = M.auc(self.y, p)
        self.history.append({"epoch": epoch + 1, "loss": float(logs.get("loss", float("nan"))), "val_auc": a})
        print(f"epoch {epoch + 1:3d} loss {logs.get('loss', float('nan')):.4f} val_auc {a:.4f}", flush=True)
        if a > self.best:
            self.best, self.best_epoch, self.best_weights = a, epoch + 1, self.model.get_weights()
        elif epoch + 1 - self.best_epoch >= self.patience:
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        self.model.set_weights(self.best_weights)


def plots(out: Path, y, p, threshold, table):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr, _ = M.roc_curve(y, p)
    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    ax.plot(fpr, tpr, lw=1.5, label=f"AUC {M.auc(y, p):.3f}")
    op = M.at_threshold(y, p, threshold)
    ax.plot(1 - op["specificity"], op["sensitivity"], "o", label=f"threshold {threshold:.3f} (from val)")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 − specificity", ylabel="sensitivity", title="ROC, official test split (n=624)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "roc.png")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    rows = [r for r in table if r["count"]]
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.bar([(r["bin"][0] + r["bin"][1]) / 2 for r in rows], [r["fraction_pneumonia"] for r in rows],
           width=0.09, alpha=0.6, label="fraction pneumonia")
    ax.plot([r["mean_probability"] for r in rows], [r["fraction_pneumonia"] for r in rows], "o-", label="bin mean")
    for r in rows:
        ax.annotate(str(r["count"]), ((r["bin"][0] + r["bin"][1]) / 2, 0.02), ha="center", fontsize=7)
    ax.set(xlabel="predicted P(pneumonia)", ylabel="observed fraction", xlim=(0, 1), ylim=(0, 1),
           title="Reliability, official test split")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(out / "reliability.png")
    plt.close(fig)


def main() -> None:
    args = parse()
    out = Path(args.out)
    version = args.version or out.name
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()

    if args.export:
        ds = E.load(args.export)
        if ds.recipe != RECIPE:
            raise SystemExit(f"the export holds {ds.recipe} tensors; this model's input is {RECIPE}")
        print(f"export {args.export}: train {ds.train.counts()} ({ds.train.patients} patients), val {ds.val.counts()}, "
              f"test {ds.test.counts()}; unlabelled skipped {ds.train.unlabelled + ds.val.unlabelled + ds.test.unlabelled}")
        # The export's tensors are the recipe's output already: the worker is served the same tensors.
        xtr, ytr = ds.train.images, ds.train.labels.astype(np.float32)
        xva, yva = ds.val.images, ds.val.labels
        xte, yte = ds.test.images, ds.test.labels
        recipe_hash = ds.recipe_hash
        split_name = "export test split (patients by keyed hash)"
        normalisation = "the cxr-28 tensors the daemon stored, as exported (the worker is served the same)"
        training_data = {"dataset": "dicom-etl export (TFRecord)", "export": {k: ds.metadata.get(k) for k in
                                                                           ("recipe", "selection", "split")},
                         "train": {"n": int(len(ytr)), "patients": ds.train.patients, "counts": ds.train.counts()},
                         "validation": {"n": int(len(yva)), "patients": ds.val.patients},
                         "test": {"n": int(len(yte)), "patients": ds.test.patients}}
    else:
        ds = D.load(args.data)
        print(f"train {len(ds.train.labels)} {ds.train.counts()} (byte-identical repeats kept: {ds.train_duplicates}), "
              f"val {ds.val.counts()}, test {ds.test.counts()}; merged train sha256 {ds.train.sha256()}")
        xtr, ytr = D.to_input(ds.train.images), ds.train.labels.astype(np.float32)
        xva, yva = D.to_input(ds.val.images), ds.val.labels
        xte, yte = D.to_input(ds.test.images), ds.test.labels
        recipe_hash = D.recipe_hash()
        split_name = "official PneumoniaMNIST test (MedMNIST v2, 28 px)"
        normalisation = ("the cxr-28 recipe on each training image as 8-bit MONOCHROME2 stored values without a window "
                         "(bit-range fallback: grey level / 255), by the Python reference of the recipe "
                         "(pneumonia_cnn.data.to_input)")
        counts = ds.train.counts()
        training_data = {"dataset": "PneumoniaMNIST (MedMNIST v2), official train split rebuilt from two partial copies",
                         "train": {"n": int(len(ytr)), "normal": counts[0], "pneumonia": counts[1],
                                   "sha256_images_then_labels": ds.train.sha256(),
                                   "byte_identical_repeats": ds.train_duplicates},
                         "validation": {"n": int(len(yva)), "sha256_images_then_labels": ds.val.sha256()},
                         "test": {"n": int(len(yte)), "sha256_images_then_labels": ds.test.sha256()},
                         "source_files_sha256": ds.sources}

    counts = ds.train.counts()
    class_weight = {c: len(ytr) / (2 * n) for c, n in counts.items()}
    steps = int(np.ceil(len(ytr) / args.batch))
    train = (tf.data.Dataset.from_tensor_slices((xtr, ytr)).shuffle(len(ytr), seed=args.seed)
             .map(augment(args.shift), num_parallel_calls=1).batch(args.batch))
    if args.rotate or args.zoom:
        geometric = keras.Sequential([keras.layers.RandomRotation(args.rotate / 360, fill_mode="reflect", seed=args.seed),
                                      keras.layers.RandomZoom(args.zoom, fill_mode="reflect", seed=args.seed + 1)])
        train = train.map(lambda x, y: (tf.clip_by_value(geometric(x, training=True), 0.0, 1.0), y))
    train = train.prefetch(2)

    widths = [int(w) for w in args.widths.split(",")]
    model = build(widths, args.dropout)
    schedule = keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=args.epochs * steps, alpha=0.01)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=args.weight_decay),
                  loss=keras.losses.BinaryCrossentropy(label_smoothing=args.label_smoothing))
    best = BestOnValAUC(xva, yva, args.patience)
    t0 = time.time()
    model.fit(train, epochs=args.epochs, class_weight=class_weight, callbacks=[best], verbose=0)
    train_seconds = time.time() - t0

    pva = model(xva, training=False).numpy().ravel()
    pte = model(xte, training=False).numpy().ravel()
    threshold = M.youden_threshold(yva, pva)
    ece, table = M.reliability(yte.astype(np.float64), pte.astype(np.float64))
    test = {"n": int(len(yte)), "auc": M.auc(yte, pte), **M.at_threshold(yte, pte, threshold),
            "ece_10_bins": ece, "at_0_5": {k: v for k, v in M.at_threshold(yte, pte, 0.5).items()
                                            if k != "threshold"}, "reliability": table}
    val = {"n": int(len(yva)), "auc": M.auc(yva, pva), **M.at_threshold(yva, pva, threshold)}
    print(f"val AUC {val['auc']:.4f} threshold {threshold:.4f}; test AUC {test['auc']:.4f} ACC {test['accuracy']:.4f} "
          f"sens {test['sensitivity']:.4f} spec {test['specificity']:.4f} ECE {ece:.4f}; "
          f"best epoch {best.best_epoch}, {train_seconds:.0f} s")

    # --- export -------------------------------------------------------------------------------------
    model.export(str(out / "saved_model"), verbose=False)
    specs, arrays = W.fold(model)
    header = W.write(out / "weights.bin", specs, arrays, [28, 28, 1])
    h2, payload = W.read(out / "weights.bin")
    folded = W.forward(h2, payload, xte).ravel()
    fold_err = float(np.abs(folded - pte).max())
    print(f"folded NumPy forward pass vs TensorFlow on the test split: max |Δp| = {fold_err:.2e}")
    if fold_err > 1e-4:
        raise SystemExit("folded weights disagree with the Keras model")

    n = args.reference_count
    ref_in = xte[:n]
    serve = tf.function(lambda x: model(x, training=False))
    ref_out = serve(tf.constant(ref_in)).numpy().astype("<f4")
    np.save(out / "reference_inputs.npy", ref_in.astype("<f4"))
    np.save(out / "reference_outputs.npy", ref_out)

    params = int(model.count_params())
    macs = 0
    hw = 28
    cin = 1
    for w in widths:
        macs += hw * hw * 9 * cin * w
        cin, hw = w, hw // 2
    macs += cin
    sha = lambda p: hashlib.sha256((out / p).read_bytes()).hexdigest()
    metrics = {"model": NAME, "version": version, "split": split_name,
               "threshold_chosen_on": "validation (Youden J)", "test": test, "validation": val,
               "folded_export_max_abs_diff": fold_err,
               "training": {"best_epoch": best.best_epoch, "epochs_run": len(best.history),
                            "seconds": round(train_seconds, 1), "history": best.history}}
    (out / "evaluation_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    meta = {
        "name": NAME, "version": version, "task": "binary classification of a frontal paediatric chest X-ray",
        "classes": D.CLASSES, "positive_class": "pneumonia",
        "output": {"activation": "sigmoid", "units": 1, "meaning": "P(pneumonia)"},
        "threshold": round(threshold, 6), "threshold_source": "validation split, Youden J",
        "input": {"recipe": RECIPE, "recipe_hash": recipe_hash, "shape": [28, 28, 1], "layout": "NHWC",
                  "dtype": "float32", "range": [0.0, 1.0],
                  "normalisation": normalisation},
        "architecture": {"widths": widths, "block": "Conv3x3(no bias)-BatchNorm-ReLU-MaxPool2", "head":
                         "GlobalAveragePool-Dropout-Dense(1)-sigmoid", "parameters": params,
                         "flops_per_image": 2 * macs},
        "files": {"weights": {"path": "weights.bin", "format": "dicom-etl-cnn v1 (see README.md)",
                              "sha256": sha("weights.bin")},
                  "saved_model": "saved_model/",
                  "reference_inputs": {"path": "reference_inputs.npy", "shape": list(ref_in.shape),
                                       "sha256": sha("reference_inputs.npy")},
                  "reference_outputs": {"path": "reference_outputs.npy", "shape": list(ref_out.shape),
                                        "sha256": sha("reference_outputs.npy")}},
        "training_data": training_data,
        "hyperparameters": {k: getattr(args, k) for k in ("seed", "epochs", "patience", "batch", "lr", "weight_decay",
                                                          "label_smoothing", "dropout", "shift", "rotate", "zoom")},
        "trained_with": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
        "created": datetime.date.today().isoformat(),
    }
    (out / "model_metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    plots(out, yte.astype(np.float64), pte.astype(np.float64), threshold, table)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
