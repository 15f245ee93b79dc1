#!/usr/bin/env python3
"""Baselines for bench/deidentify/run.sh: de-identify a list of files with dicognito or pydicom/deid, one
process, read → de-identify → write, and print one line: TOOL FILES_OK FILES_FAILED SECONDS.

Usage: baselines.py dicognito|deid LIST_FILE OUT_DIR
"""
import os
import sys
import time
import warnings

import pydicom

warnings.filterwarnings("ignore")


def main():
    tool, list_file, out_dir = sys.argv[1:4]
    with open(list_file) as f:
        files = [line.rstrip("\n") for line in f if line.strip()]
    os.makedirs(out_dir, exist_ok=True)
    ok = failed = 0
    if tool == "dicognito":
        from dicognito.anonymizer import Anonymizer
        anonymizer = Anonymizer(seed="bench-seed")  # a fixed seed: deterministic, like a key
        start = time.perf_counter()
        for i, path in enumerate(files):
            try:
                ds = pydicom.dcmread(path, force=True)
                anonymizer.anonymize(ds)
                ds.save_as(os.path.join(out_dir, "%d.dcm" % i))
                ok += 1
            except Exception:
                failed += 1
        seconds = time.perf_counter() - start
    elif tool == "deid":
        import logging
        logging.disable(logging.CRITICAL)
        from deid.config import DeidRecipe
        from deid.dicom import replace_identifiers
        recipe = DeidRecipe()  # deid's default DICOM recipe
        start = time.perf_counter()
        for i, path in enumerate(files):
            try:
                ds = pydicom.dcmread(path, force=True)
                cleaned = replace_identifiers(dicom_files=[ds], deid=recipe, remove_private=True)
                cleaned[0].save_as(os.path.join(out_dir, "%d.dcm" % i))
                ok += 1
            except Exception:
                failed += 1
        seconds = time.perf_counter() - start
    else:
        raise SystemExit("unknown tool " + tool)
    print("%s %d %d %.3f" % (tool, ok, failed, seconds))


if __name__ == "__main__":
    main()
