"""bench/ingest workloads: copies of corpus images with fresh UIDs, written into a folder outside the repository.

    make_workload.py CORPUS KIND COUNT OUT

KIND is `plain` (uncompressed single-frame CT/MR slices), `compressed` (CR/DX images plus JPEG, JPEG-LS and
RLE images of any modality) or `backlog` (uncompressed CT/MR slices of at most 140 kB, 1,000 files per folder: a
large backlog that fits on a small disk). The sources are the corpus files of that kind that pydicom decodes and writes
back, less those the Basic profile rejects as possibly burned-in; each copy
gets a new StudyInstanceUID and SeriesInstanceUID per (replica, original series), a new SOPInstanceUID, and a
patient ID and name per replica, so that every file is a new instance for every contender. The pixel data and
transfer syntax are kept as they are. Prints one summary line: files, sources, bytes.
"""
import io
import os
import sys
import warnings

import pydicom
from pydicom.pixels import pixel_array
from pydicom.uid import generate_uid

warnings.simplefilter("ignore")

UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
# What etl/deidentify/basic.yaml rejects as possibly burned-in text (secondary captures, ultrasound, dose
# reports, encapsulated documents, screen saves): left out, so that every contender does the same work on
# every file.
BURNED_IN_CLASSES = ("1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.6", "1.2.840.10008.5.1.4.1.1.3",
                     "1.2.840.10008.5.1.4.1.1.88.6", "1.2.840.10008.5.1.4.1.1.104")
BURNED_IN_TEXT = ("DOSE REPORT", "DOSE INFO", "PATIENT PROTOCOL", "SCREEN SAVE", "SCREENSHOT")
COMPRESSED = {
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.5",
}


def candidates(corpus):
    for root, _, names in os.walk(corpus):
        for name in sorted(names):
            if name.endswith(".tsv") or name.startswith("_source") or "Deeply-Nested" in name:
                continue
            yield os.path.join(root, name)


def wanted(ds, kind):
    meta = getattr(ds, "file_meta", None)
    syntax = str(getattr(meta, "TransferSyntaxUID", "") or "")
    modality = str(ds.get("Modality", "") or "")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if "PixelData" not in ds or frames != 1 or str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        return False
    sop_class = str(ds.get("SOPClassUID", "") or "")
    text = (str(ds.get("SeriesDescription", "")) + "\\" + "\\".join(map(str, ds.get("ImageType", []) or []))).upper()
    if modality in ("US", "SC") or sop_class.startswith(BURNED_IN_CLASSES) or any(t in text for t in BURNED_IN_TEXT):
        return False
    if not all(ds.get(k) for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")):
        return False
    if kind == "plain":
        return modality in ("CT", "MR") and syntax in UNCOMPRESSED and int(ds.Rows) * int(ds.Columns) >= 64 * 64
    if kind == "backlog":
        return (modality in ("CT", "MR") and syntax in UNCOMPRESSED and int(ds.Rows) * int(ds.Columns) >= 64 * 64
                and int(ds.Rows) * int(ds.Columns) * int(ds.get("BitsAllocated", 16)) // 8 <= 140_000)
    return (modality in ("CR", "DX") and syntax in UNCOMPRESSED | COMPRESSED) or syntax in COMPRESSED


def main():
    corpus, kind, count, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    sources = []
    for path in sorted(candidates(corpus)):
        try:
            ds = pydicom.dcmread(path)
            if not wanted(ds, kind):
                continue
            pixel_array(ds, raw=True)
            ds.save_as(io.BytesIO(), enforce_file_format=False)   # some corpus files cannot be written back
            sources.append(path)
        except Exception:
            continue
    if not sources:
        sys.exit(f"no {kind} source files under the corpus")
    os.makedirs(out, exist_ok=True)
    written = total = 0
    replica = 0
    cached = {path: pydicom.dcmread(path) for path in sources} if kind == "backlog" else {}
    while written < count:
        series_map, study_map = {}, {}
        patient = f"BENCH{replica:06d}"
        for path in sources:
            if written >= count:
                break
            # A backlog of 100,000 files reuses each source's dataset (every UID is set anew before each write).
            ds = cached[path] if cached else pydicom.dcmread(path)
            study = study_map.setdefault(str(ds.StudyInstanceUID), generate_uid())
            series = series_map.setdefault(str(ds.SeriesInstanceUID), generate_uid())
            sop = generate_uid()
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
            ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.PatientID = patient
            ds.PatientName = f"Bench^Replica{replica}"
            # Names unique across workloads: the 10k run drops several workload folders into one drop folder.
            target = os.path.join(out, f"{os.path.basename(out.rstrip('/'))}-{written:06d}.dcm")
            if kind == "backlog":
                folder = os.path.join(out, f"b{written // 1000:03d}")
                os.makedirs(folder, exist_ok=True)
                target = os.path.join(folder, f"backlog-{written:06d}.dcm")
            ds.save_as(target, enforce_file_format=False)
            total += os.path.getsize(target)
            written += 1
        replica += 1
    print(f"{written} {len(sources)} {total}")


if __name__ == "__main__":
    main()
