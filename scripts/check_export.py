#!/usr/bin/env python3
"""Reads a `dicom-etl export` back with TensorFlow and checks it against the object store and the manifest.

    check_export.py --export DIR --objects ROOT --keys KEYS.tsv

--objects is a filesystem object store's root (its objects under data/<key>); KEYS.tsv maps each exported
instance to its tensor's key (columns sop_instance_uid, tensor_key: what imaging.tensors holds). Checks, for
every record of every shard (tf.data.TFRecordDataset, tf.io.parse_single_example): the tensor's bytes, shape and
dtype equal the stored .npy; the record's identifiers and label equal its manifest row; no patient pseudonym is
in two splits; every manifest row has its record. Prints one JSON line; exits 1 on any difference.
"""
import argparse
import csv
import glob
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

FEATURES = {
    "tensor": tf.io.FixedLenFeature([], tf.string),
    "tensor/shape": tf.io.VarLenFeature(tf.int64),
    "tensor/dtype": tf.io.FixedLenFeature([], tf.string),
    "recipe/name": tf.io.FixedLenFeature([], tf.string),
    "recipe/hash": tf.io.FixedLenFeature([], tf.string),
    "patient_id": tf.io.FixedLenFeature([], tf.string),
    "study_uid": tf.io.FixedLenFeature([], tf.string),
    "series_uid": tf.io.FixedLenFeature([], tf.string),
    "sop_instance_uid": tf.io.FixedLenFeature([], tf.string),
    "modality": tf.io.FixedLenFeature([], tf.string),
    "body_part": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.string, default_value=""),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--export", required=True)
    ap.add_argument("--objects", required=True)
    ap.add_argument("--keys", required=True)
    args = ap.parse_args()
    keys = {}
    with open(args.keys) as f:
        for row in csv.DictReader(f, delimiter="\t"):
            keys[row["sop_instance_uid"]] = row["tensor_key"]
    with open(os.path.join(args.export, "manifest.csv"), newline="") as f:
        manifest = {(r["shard"], int(r["record"])): r for r in csv.DictReader(f)}
    problems, records, splits_of = [], 0, {}
    hashes = set()
    for path in sorted(glob.glob(os.path.join(args.export, "Split-*", "data_tfrecord-*"))):
        shard = os.path.relpath(path, args.export)
        split = shard.split("/")[0][len("Split-"):]
        for i, raw in enumerate(tf.data.TFRecordDataset(path)):
            records += 1
            ex = tf.io.parse_single_example(raw, FEATURES)
            text = {k: ex[k].numpy().decode() for k in FEATURES if k not in ("tensor", "tensor/shape")}
            row = manifest.pop((shard, i), None)
            if row is None:
                problems.append(f"{shard}#{i}: no manifest row")
                continue
            for k in ("patient_id", "study_uid", "series_uid", "sop_instance_uid", "modality", "body_part", "label"):
                if text[k] != row[k]:
                    problems.append(f"{shard}#{i}: {k} differs from the manifest")
            splits_of.setdefault(text["patient_id"], set()).add(split)
            hashes.add(text["recipe/hash"])
            stored = np.load(os.path.join(args.objects, "data", keys[text["sop_instance_uid"]]))
            shape = list(tf.sparse.to_dense(ex["tensor/shape"]).numpy())
            data = ex["tensor"].numpy()
            if shape != list(stored.shape) or text["tensor/dtype"] != str(stored.dtype) \
                    or data != np.ascontiguousarray(stored).astype(stored.dtype.newbyteorder("<")).tobytes():
                problems.append(f"{shard}#{i}: tensor differs from the stored .npy")
    if manifest:
        problems.append(f"{len(manifest)} manifest rows without a record")
    crossing = sum(1 for s in splits_of.values() if len(s) > 1)
    if crossing:
        problems.append(f"{crossing} patients in more than one split")
    print(json.dumps({"records": records, "patients": len(splits_of), "patients_in_two_splits": crossing,
                      "recipe_hashes": sorted(hashes), "problems": problems[:20], "problem_count": len(problems),
                      "tensorflow": tf.__version__}))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
