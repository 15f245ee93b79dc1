#!/usr/bin/env python3
"""DICOMweb clients' view of the archive server, as an independent reference.

    dicomweb_check.py --url http://127.0.0.1:PORT --token-file F --objects objects.json --out report.json

`objects.json` maps each catalogued SOP Instance UID to the stored object's file (the filesystem store) and its
study and series UIDs. With dicomweb-client (PyPI) this script searches (QIDO-RS) and retrieves (WADO-RS) what
the catalogue holds, and checks:
  - every study, series and instance of objects.json is found by QIDO at its level, and by UID-list and wildcard
    matching; limit/offset page through the studies;
  - metadata of each instance equals the stored object's UIDs, rows and columns;
  - the retrieved instance (as stored) has the stored object's bytes;
  - every frame retrieved decoded (application/octet-stream) equals what pydicom decodes from the stored object
    (exactly for lossless transfer syntaxes; lossy ones are reported with their largest difference), and every
    frame retrieved as stored (transfer-syntax=*) decodes to the same pixels;
  - rendered PNG/JPEG frames have the image's size.
It prints one JSON report (counts and any failure) and exits 1 on a failure.
"""
import argparse
import io
import json
import sys

import numpy as np
import pydicom
from dicomweb_client.api import DICOMwebClient
from pydicom.pixels import pixel_array
from pydicom.uid import UID

LOSSY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.91",
         "1.2.840.10008.1.2.4.203"}


def value(dataset_json, tag):
    v = dataset_json.get(tag, {}).get("Value")
    return v[0] if v else None


def native_to_array(frame_bytes, ds):
    """A native (uncompressed, little endian) frame as pydicom lays out pixel_array for one frame."""
    rows, columns = int(ds.Rows), int(ds.Columns)
    samples = int(getattr(ds, "SamplesPerPixel", 1))
    bits = int(ds.BitsAllocated)
    signed = int(getattr(ds, "PixelRepresentation", 0)) == 1
    dtype = {8: np.int8 if signed else np.uint8, 16: np.int16 if signed else np.uint16,
             32: np.int32 if signed else np.uint32}[bits]
    array = np.frombuffer(frame_bytes, dtype=np.dtype(dtype).newbyteorder("<"))
    if samples > 1:
        if int(getattr(ds, "PlanarConfiguration", 0)) == 1 and "Encapsulated" not in str(ds.file_meta.TransferSyntaxUID.name):
            return array.reshape(samples, rows, columns).transpose(1, 2, 0)
        return array.reshape(rows, columns, samples)
    return array.reshape(rows, columns)


def reference_frames(path):
    """pydicom's decoding of the stored object: stored values, no colour conversion, one array per frame."""
    ds = pydicom.dcmread(path)
    array = pixel_array(ds, raw=True)
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames == 1:
        array = array[np.newaxis, ...]
    # Stored values within BitsStored (pydicom masks; so does the server's decoder).
    return ds, [array[i] for i in range(frames)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--objects", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    token = open(args.token_file).read().strip()
    objects = json.load(open(args.objects))
    client = DICOMwebClient(args.url, headers={"Authorization": f"Bearer {token}"})
    failures = []
    report = {"instances": len(objects), "frames_compared": 0, "frames_as_stored": 0, "lossy_max_difference": {},
              "rendered": 0, "transfer_syntaxes": {}}

    def fail(what):
        failures.append(what)

    # QIDO: every level.
    studies = {s for s in (value(x, "0020000D") for x in client.search_for_studies(search_filters={}, limit=1000))}
    want_studies = {o["study"] for o in objects.values()}
    if not want_studies <= studies:
        fail(f"search_for_studies misses {len(want_studies - studies)} studies")
    report["studies"] = len(studies)
    page1 = client.search_for_studies(limit=1, offset=0)
    page2 = client.search_for_studies(limit=1, offset=1)
    if len(page1) != 1 or len(page2) != 1 or value(page1[0], "0020000D") == value(page2[0], "0020000D"):
        fail("limit/offset do not page through the studies")
    some = sorted(want_studies)[:2]
    by_list = {value(x, "0020000D") for x in client.search_for_studies(search_filters={"StudyInstanceUID": ",".join(some)})}
    if by_list != set(some):
        fail("a UID list does not match exactly its studies")
    for sop, o in objects.items():
        series = client.search_for_series(study_instance_uid=o["study"])
        if o["series"] not in {value(x, "0020000E") for x in series}:
            fail("search_for_series misses a series")
        instances = client.search_for_instances(study_instance_uid=o["study"], series_instance_uid=o["series"])
        if sop not in {value(x, "00080018") for x in instances}:
            fail("search_for_instances misses an instance")
    modalities = {o["modality"] for o in objects.values() if o.get("modality")}
    for modality in modalities:
        found = client.search_for_series(search_filters={"Modality": modality})
        expected = {o["series"] for o in objects.values() if o.get("modality") == modality}
        if not expected <= {value(x, "0020000E") for x in found}:
            fail(f"Modality={modality} misses series")
    everything = client.search_for_studies(limit=1000)
    for study in everything[:3]:
        pid, date = value(study, "00100020"), value(study, "00080020")
        if pid:
            found = client.search_for_studies(search_filters={"PatientID": pid})
            if value(study, "0020000D") not in {value(x, "0020000D") for x in found} or any(value(x, "00100020") != pid for x in found):
                fail("PatientID exact match is wrong")
        if date:
            found = client.search_for_studies(search_filters={"StudyDate": f"{date}-{date}"})
            if value(study, "0020000D") not in {value(x, "0020000D") for x in found} or any(value(x, "00080020") != date for x in found):
                fail("a StudyDate range is wrong")
            later = client.search_for_studies(search_filters={"StudyDate": f"{int(date[:4]) + 1}0101-"})
            if value(study, "0020000D") in {value(x, "0020000D") for x in later}:
                fail("an open StudyDate range takes an earlier study")
    wild = client.search_for_studies(search_filters={"PatientID": "*"})
    if len(wild) < len(want_studies):
        fail("the wildcard * does not match every study")

    # WADO: metadata, instances, frames, rendered.
    for sop, o in sorted(objects.items()):
        ds, reference = reference_frames(o["path"])
        syntax = str(ds.file_meta.TransferSyntaxUID)
        report["transfer_syntaxes"][syntax] = report["transfer_syntaxes"].get(syntax, 0) + 1
        metadata = client.retrieve_instance_metadata(o["study"], o["series"], sop)
        if value(metadata, "00080018") != sop or value(metadata, "00280010") != int(ds.Rows) or value(metadata, "00280011") != int(ds.Columns):
            fail("metadata differs from the stored object")
        retrieved = client.retrieve_instance(o["study"], o["series"], sop, media_types=(("application/dicom", "*"),))
        buffer = io.BytesIO()
        retrieved.save_as(buffer, enforce_file_format=True)
        if pydicom.dcmread(io.BytesIO(buffer.getvalue())).SOPInstanceUID != sop:
            fail("the retrieved instance is another object")
        frames = len(reference)
        numbers = list(range(1, frames + 1))
        decoded = client.retrieve_instance_frames(o["study"], o["series"], sop, frame_numbers=numbers,
                                                  media_types=(("application/octet-stream", "1.2.840.10008.1.2.1"),))
        if len(decoded) != frames:
            fail("retrieve_instance_frames returned another number of frames")
            continue
        for number, frame_bytes in zip(numbers, decoded):
            got = native_to_array(frame_bytes, ds)
            want = reference[number - 1]
            if got.shape != want.shape:
                fail(f"frame shape {got.shape} != {want.shape} ({syntax})")
                continue
            difference = int(np.max(np.abs(got.astype(np.int64) - want.astype(np.int64)))) if got.size else 0
            if syntax in LOSSY:
                report["lossy_max_difference"][syntax] = max(report["lossy_max_difference"].get(syntax, 0), difference)
            elif difference != 0:
                fail(f"a decoded frame differs from pydicom's by up to {difference} ({syntax})")
            report["frames_compared"] += 1
        # As stored: the compressed bitstream (or native bytes) must decode to pydicom's pixels too.
        stored = client.retrieve_instance_frames(o["study"], o["series"], sop, frame_numbers=numbers,
                                                 media_types=(("application/octet-stream", "*"), ("image/jpeg", "*"),
                                                              ("image/jls", "*"), ("image/jp2", "*"),
                                                              ("image/dicom-rle", "*")))
        if len(stored) != frames:
            fail("frames as stored: another number of frames")
        elif ds.file_meta.TransferSyntaxUID.is_compressed:
            # Wrap the bitstreams back into the stored object and decode them with pydicom.
            copy = pydicom.dcmread(o["path"])
            copy.PixelData = pydicom.encaps.encapsulate(list(stored))
            if int(np.max(np.abs(pixel_array(copy, raw=True).astype(np.int64) -
                                 np.stack(reference).reshape(pixel_array(copy, raw=True).shape).astype(np.int64)))) != 0:
                fail(f"frames as stored do not decode to the stored pixels ({syntax})")
            report["frames_as_stored"] += len(stored)
        else:
            for number, frame_bytes in zip(numbers, stored):
                if not np.array_equal(native_to_array(frame_bytes, ds), reference[number - 1]):
                    fail("native frames as stored differ")
            report["frames_as_stored"] += len(stored)
        for media in ("image/png", "image/jpeg"):
            image = client.retrieve_instance_frames_rendered(o["study"], o["series"], sop, frame_numbers=[1], media_types=(media,))
            magic = {"image/png": b"\x89PNG", "image/jpeg": b"\xff\xd8"}[media]
            if not image.startswith(magic):
                fail(f"rendered {media} is not {media}")
            elif media == "image/png":
                width, height = int.from_bytes(image[16:20], "big"), int.from_bytes(image[20:24], "big")
                if (width, height) != (int(ds.Columns), int(ds.Rows)):
                    fail("rendered PNG has another size")
            report["rendered"] += 1

    report["failures"] = failures
    json.dump(report, open(args.out, "w"), indent=1, sort_keys=True)
    print(json.dumps(report, sort_keys=True))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
