"""The baseline of bench/ingest: the daemon's job done the way a data team would script it in Python.

    python_pipeline.py LIST_FILE OUT_DIR DSN PROCESSES

For each file, on PROCESSES worker processes (multiprocessing): read it with pydicom, keep the original
identifiers, de-identify it with dicognito (one keyed Anonymizer per process), write the de-identified file;
for a chest CR/DX (the route of etl/routes.yaml) decode the pixels, apply the rescale, crop the centre square,
resize it to 28x28 by area averaging with NumPy, scale to [0, 1] and save it as .npy; then insert the
de-identified header (DICOM JSON, no bulk data) and the vault's original identifiers into PostgreSQL with
psycopg, one transaction per file. Prints one line: FILES_OK FILES_FAILED SECONDS (from the first file taken
to the last committed; process start-up and imports excluded).
"""
import json
import multiprocessing
import os
import sys
import time
import warnings

SCHEMA = """
CREATE TABLE IF NOT EXISTS py_instances (
    sop_instance_uid text PRIMARY KEY, series_uid text NOT NULL, study_uid text NOT NULL, patient_id text NOT NULL,
    modality text, rows int, columns int, transfer_syntax_uid text, file_path text NOT NULL, tensor_path text,
    header jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE IF NOT EXISTS py_vault (
    sop_instance_uid text PRIMARY KEY, original_sop_instance_uid text NOT NULL, original_series_uid text NOT NULL,
    original_study_uid text NOT NULL, original_patient_id text, original_patient_name text);
"""

ROUTED_MODALITIES = {"CR", "DX"}
ROUTED_BODY_PARTS = {"CHEST", "THORAX", "LUNG"}
_state = {}


def _init(out_dir, dsn):
    warnings.simplefilter("ignore")
    import psycopg
    from dicognito.anonymizer import Anonymizer

    _state["out"] = out_dir
    _state["db"] = psycopg.connect(dsn)
    _state["anonymizer"] = Anonymizer(seed="bench-seed")


def _resize_area(image, size):
    import numpy as np

    rows, cols = image.shape
    side = min(rows, cols)
    top, left = (rows - side) // 2, (cols - side) // 2
    square = image[top:top + side, left:left + side]
    # Area averaging: crop to a multiple of the output size, then mean over the blocks.
    block = side // size
    if block == 0:
        index = (np.arange(size) * side // size)
        return square[np.ix_(index, index)]
    square = square[:block * size, :block * size]
    return square.reshape(size, block, size, block).mean(axis=(1, 3))


def _one(path):
    import numpy as np
    import pydicom
    from pydicom.pixels import apply_rescale, pixel_array

    try:
        ds = pydicom.dcmread(path)
        original = (str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID),
                    str(ds.get("PatientID", "")), str(ds.get("PatientName", "")))
        _state["anonymizer"].anonymize(ds)
        sop = str(ds.SOPInstanceUID)
        out = _state["out"]
        file_path = os.path.join(out, "dicom", sop + ".dcm")
        ds.save_as(file_path, enforce_file_format=False)
        tensor_path = None
        modality = str(ds.get("Modality", ""))
        if modality in ROUTED_MODALITIES and str(ds.get("BodyPartExamined", "")).upper() in ROUTED_BODY_PARTS:
            pixels = apply_rescale(pixel_array(ds).astype(np.float32), ds)
            if pixels.ndim == 3:
                pixels = pixels.mean(axis=2)
            small = _resize_area(pixels, 28).astype(np.float32)
            low, high = float(small.min()), float(small.max())
            small = (small - low) / (high - low) if high > low else np.zeros_like(small)
            if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
                small = 1.0 - small
            tensor_path = os.path.join(out, "tensors", sop + ".npy")
            np.save(tensor_path, small)
        header = ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=lambda element: "")
        header.pop("7FE00010", None)
        db = _state["db"]
        with db.transaction():
            db.execute(
                "INSERT INTO py_instances (sop_instance_uid, series_uid, study_uid, patient_id, modality, rows, columns,"
                " transfer_syntax_uid, file_path, tensor_path, header) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (sop_instance_uid) DO NOTHING",
                (sop, str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID), str(ds.get("PatientID", "")), modality,
                 int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0), str(ds.file_meta.TransferSyntaxUID),
                 file_path, tensor_path, json.dumps(header)))
            db.execute(
                "INSERT INTO py_vault VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (sop_instance_uid) DO NOTHING",
                (sop,) + original)
        return True
    except Exception:
        return False


def main():
    list_file, out_dir, dsn, processes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    files = [line for line in open(list_file).read().split("\n") if line]
    os.makedirs(os.path.join(out_dir, "dicom"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "tensors"), exist_ok=True)
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as db:
        db.execute(SCHEMA)
        db.execute("TRUNCATE py_instances, py_vault")
    with multiprocessing.Pool(processes, initializer=_init, initargs=(out_dir, dsn)) as pool:
        # Warm up every worker (imports, connection) before the clock starts.
        pool.map(time.sleep, [0.2] * processes)
        start = time.perf_counter()
        results = pool.map(_one, files, chunksize=8)
        seconds = time.perf_counter() - start
    ok = sum(results)
    print(f"{ok} {len(files) - ok} {seconds:.3f}")


if __name__ == "__main__":
    main()
