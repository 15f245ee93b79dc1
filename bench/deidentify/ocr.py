#!/usr/bin/env python3
"""The burned-in text part of bench/deidentify/run.sh, on a set written by scripts/burned_in_text.py (manifest.json).

    ocr.py presidio SET_DIR OUT_DIR [TESSERACT_CONFIG]
        Presidio's DicomImageRedactorEngine over every file of the set, one process, read → redact → write (the
        same relative paths under OUT_DIR); prints: presidio FILES_OK FILES_FAILED SECONDS (engine set-up and
        imports excluded). Its analyzer runs on a blank spaCy pipeline (spaCy's trained models are not on PyPI)
        with the deny-list of header values the redactor builds itself (use_metadata=True). TESSERACT_CONFIG is
        passed to Tesseract (e.g. "--psm 11": sparse text; its default page layout finds no annotation here).
    ocr.py score SET_DIR OUT_DIR
        Compares each output with its input; prints: score ID_REDACTED ID_TOTAL ALL_REDACTED ALL_TOTAL
        NOTEXT_ALTERED NOTEXT_TOTAL MISSING ID_HALF. A planted string counts as redacted when a solid fill covers it:
        in the output, at least 99 % of its visible ink pixels (the manifest's mask) and 90 % of the pixels of its ink
        box hold one value (all samples, for colour), the box's most common one (whatever the fill value: ink drawn
        at the darkest level and blanked to black does not change, yet is covered). ID_HALF counts the identifying
        strings with at least half of their ink so covered. An output missing (rejected, failed) redacts nothing. A
        text-free image counts as altered when any pixel changed.
"""
import base64
import json
import os
import sys
import time
import warnings

import numpy as np
import pydicom

warnings.filterwarnings("ignore")


def manifest(set_dir):
    with open(os.path.join(set_dir, "manifest.json")) as f:
        return json.load(f)["files"]


def presidio(set_dir, out_dir, config=None):
    import logging
    import tempfile

    logging.disable(logging.CRITICAL)
    import spacy
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_image_redactor import DicomImageRedactorEngine, ImageAnalyzerEngine

    model = tempfile.mkdtemp(prefix="spacy-blank-")
    spacy.blank("en").to_disk(model)
    nlp = NlpEngineProvider(nlp_configuration={"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}).create_engine()
    engine = DicomImageRedactorEngine(image_analyzer_engine=ImageAnalyzerEngine(analyzer_engine=AnalyzerEngine(nlp_engine=nlp)))
    files = manifest(set_dir)
    ok = failed = 0
    start = time.perf_counter()
    for entry in files:
        target = os.path.join(out_dir, entry["path"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            ds = pydicom.dcmread(os.path.join(set_dir, entry["path"]))
            redacted = engine.redact(ds, fill="contrast", use_metadata=True, ocr_kwargs={"config": config} if config else None)
            redacted.save_as(target)
            ok += 1
        except Exception:
            failed += 1
    seconds = time.perf_counter() - start
    print("presidio", ok, failed, "%.3f" % seconds)


def frames(path):
    ds = pydicom.dcmread(path)
    px = ds.pixel_array
    count = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if count == 1:
        px = px[None]
    if px.ndim == 3:  # grey: add a sample axis
        px = px[..., None]
    return px


def ink(planted):
    x0, y0, w, h = planted["box"]
    stride = (w + 7) // 8
    bits = np.unpackbits(np.frombuffer(base64.b64decode(planted["mask"]), dtype=np.uint8))
    bits = bits[: stride * 8 * h].reshape(h, stride * 8)[:, :w]
    ys, xs = np.nonzero(bits)
    return ys + y0, xs + x0


def score(set_dir, out_dir):
    id_ok = id_total = all_ok = all_total = altered = notext = missing = id_half = 0
    for entry in manifest(set_dir):
        before = frames(os.path.join(set_dir, entry["path"]))
        target = os.path.join(out_dir, entry["path"])
        after = frames(target) if os.path.exists(target) else None
        if after is None:
            missing += 1
        elif after.shape != before.shape:
            after = None
        if entry["kind"] == "no-text":
            notext += 1
            altered += int(after is None or bool(np.any(after != before)))
            continue
        for s in entry["planted"]:
            covered = 0.0
            if after is not None:
                ys, xs = ink(s)
                x0, y0, w, h = s["box"]
                box = after[s["frame"], y0:y0 + h, x0:x0 + w].reshape(-1, after.shape[-1])
                values, counts = np.unique(box, axis=0, return_counts=True)
                fill = values[counts.argmax()]
                if counts.max() >= 0.9 * len(box) and len(ys) > 0:
                    covered = float(np.all(after[s["frame"], ys, xs] == fill, axis=-1).mean())
            redacted = covered >= 0.99
            all_total += 1
            all_ok += int(redacted)
            if s["identifying"]:
                id_total += 1
                id_ok += int(redacted)
                id_half += int(covered >= 0.5)
    print("score", id_ok, id_total, all_ok, all_total, altered, notext, missing, id_half)


if __name__ == "__main__":
    command, set_dir, out_dir = sys.argv[1:4]
    {"presidio": presidio, "score": score}[command](set_dir, out_dir, *sys.argv[4:])
