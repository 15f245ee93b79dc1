#!/usr/bin/env python3
"""Writes a PneumoniaMNIST split as a PACS export of chest radiographs: one DICOM CR file per image and encoding.

    medmnist-to-dicom.py --medmnist ../shared/data/medmnist --split test --out DROP --reference DIR \\
        [--encodings u8-window,u8,u8-rle,...|all]

The split is the official one (test 624, val 524, train 4,708 rebuilt by models/pneumonia_cnn/data.py). The
export looks like a real one: folders named after the (synthetic) patient, then the study, then the series; a
patient has one or two studies (admission, follow-up); each study holds one CR series of one frontal image.
Files: CR Image Storage, Modality CR, BodyPartExamined CHEST (the sc-text encoding: Secondary Captures, Modality
CR, with the patient's name, ID and study date burned into the pixels). Every encoding writes every image again, for its
own patients, studies and series (fresh UIDs), under DROP/<encoding>/. Each file is written under a dot-name
and renamed into place. The encodings all hold the same pixels, so that a recipe keeping stored meaning gives
grey level / 255 from each (see ENCODINGS).

Into --reference it writes what a test compares the pipeline's output with:
  images.npy    float32 (N, 28, 28, 1), grey level / 255 of the npz images
  inputs.npy    float32 (N, 28, 28, 1), what models/train.py feeds the model for these images
                (pneumonia_cnn.data.to_input: the cxr-28 recipe by the Python reference)
  manifest.tsv  index, label, patient_id, accession_number, study_uid, series_uid, sop_instance_uid, path, encoding
"""
import argparse
import csv
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "models"))
from pneumonia_cnn import data as D  # noqa: E402

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
OFFICIAL_SIZES = {"test": 624, "val": 524, "train": 4708}
SURNAMES = ["Garcia", "Okafor", "Nguyen", "Schmidt", "Rossi", "Kowalski", "Haddad", "Tanaka", "Silva", "Jensen",
            "Dubois", "Ivanova", "Murphy", "Chen", "Novak", "Mensah", "Larsen", "Costa", "Yilmaz", "Weber"]
GIVEN = ["Ana", "Ben", "Chidi", "Dara", "Elif", "Femi", "Gita", "Hugo", "Ines", "Jon", "Kemal", "Lea", "Mira",
         "Noah", "Olu", "Pia", "Quentin", "Rosa", "Sami", "Tara"]

# Each encoding: (what it is, pixel module for grey levels g (28×28 uint8) and the image's index, compressor).
# The pixel module returns (stored array, attributes); display value = g / 255 under the cxr-28 recipe in all.


def _u8(g, i, **extra):
    return g.astype(np.uint8), dict(PhotometricInterpretation="MONOCHROME2", BitsAllocated=8, BitsStored=8,
                                    HighBit=7, PixelRepresentation=0, **extra)


def _window(g, i):
    # Window 128/256, LINEAR: display = (x − 127.5) / 255 + 0.5 = x / 255.
    return _u8(g, i, WindowCenter=128, WindowWidth=256)


def _u12(g, i):
    # 12 bits stored in 16: stored 16·g, modality 0.5·stored − 100 = 8·g − 100 (−100 … 1940); Window LINEAR
    # 920.5/2041: display = (m − 920) / 2040 + 0.5 = g / 255.
    return (g.astype(np.uint16) * 16), dict(
        PhotometricInterpretation="MONOCHROME2", BitsAllocated=16, BitsStored=12, HighBit=11, PixelRepresentation=0,
        RescaleSlope="0.5", RescaleIntercept="-100", RescaleType="US", WindowCenter="920.5", WindowWidth="2041")


def _s16(g, i):
    # Signed 16 bits: stored 257·g − 32768, modality 0.25·stored + 8192 = 64.25·g (0 … 16383.75); Window
    # LINEAR_EXACT 8191.875/16383.75: display = (m − c) / w + 0.5 = g / 255.
    return (g.astype(np.int32) * 257 - 32768).astype(np.int16), dict(
        PhotometricInterpretation="MONOCHROME2", BitsAllocated=16, BitsStored=16, HighBit=15, PixelRepresentation=1,
        RescaleSlope="0.25", RescaleIntercept="8192", RescaleType="US", WindowCenter="8191.875",
        WindowWidth="16383.75", VOILUTFunction="LINEAR_EXACT")


def _mono1(g, i):
    # MONOCHROME1 (0 is white), no window: stored 255 − g, display = 1 − stored / 255 = g / 255.
    stored, attributes = _u8(255 - g, i)
    attributes["PhotometricInterpretation"] = "MONOCHROME1"
    return stored, attributes


def _borders(g, i):
    # Twice the size (each grey level a 2×2 block) inside borders on the long side: even images landscape
    # 56×72 with black columns left and right, odd ones portrait 72×56 with white rows above and below. The centre
    # crop keeps the 56×56 image, the area resize averages each 2×2 block back to g.
    big = np.kron(g.astype(np.uint8), np.ones((2, 2), dtype=np.uint8))
    if i % 2 == 0:
        return _u8(np.pad(big, ((0, 0), (8, 8)), constant_values=0), i)
    return _u8(np.pad(big, ((8, 8), (0, 0)), constant_values=255), i)


def _sc_text(g, i):
    # A Secondary Capture of the image 16× upscaled (each grey level a 16×16 block: the area resize to 28×28 gives g
    # back), BurnedInAnnotation YES; `burn` then draws the patient's name, ID and study date into its bottom-left
    # corner (white, 12-pixel DejaVu Sans Bold: about 3 % of the 448×448 image), as a screen capture would carry them.
    stored, attributes = _u8(np.kron(g.astype(np.uint8), np.ones((16, 16), dtype=np.uint8)), i)
    attributes.update(SOPClassUID=SECONDARY_CAPTURE, BurnedInAnnotation="YES", ConversionType="WSD")
    return stored, attributes


def burn(stored: np.ndarray, name: str, patient_id: str, study_date: str) -> np.ndarray:
    image = Image.fromarray(stored)
    draw = ImageDraw.Draw(image)
    font = ImageFont.truetype(FONT, 12)
    surname, given = name.split("^")
    lines = [f"{surname.upper()}, {given.upper()}", patient_id, f"{study_date[6:]}/{study_date[4:6]}/{study_date[:4]}"]
    for k, line in enumerate(lines):
        draw.text((4, stored.shape[0] - 4 - 15 * (len(lines) - k)), line, fill=255, font=font)
    return np.asarray(image, dtype=np.uint8)


ENCODINGS = {
    "u8-window": ("8-bit MONOCHROME2, Window 128/256, explicit VR little endian", _window, None),
    "u8": ("8-bit MONOCHROME2 without a window, explicit VR little endian", _u8, None),
    "u8-rle": ("8-bit MONOCHROME2 without a window, RLE Lossless", _u8, "rle"),
    "u8-jpegls": ("8-bit MONOCHROME2 without a window, JPEG-LS lossless (DCMTK dcmcjpls)", _u8, "jpegls"),
    "u8-jpeg": ("8-bit MONOCHROME2 without a window, JPEG lossless SV1 (DCMTK dcmcjpeg)", _u8, "jpeg"),
    "u12-rescale-window": ("12-bit, rescale slope 0.5 / intercept -100, Window LINEAR", _u12, None),
    "s16-rescale-window": ("signed 16-bit, rescale slope 0.25 / intercept 8192, Window LINEAR_EXACT", _s16, None),
    "mono1": ("8-bit MONOCHROME1 without a window", _mono1, None),
    "u8-borders": ("8-bit without a window, 2x upscaled, non-square with borders on the long side", _borders, None),
    "sc-text": ("8-bit Secondary Capture, 16x upscaled, name, ID and date burned into the pixels", _sc_text, "text"),
}
TOOLS = {"jpegls": ["dcmcjpls", "+el"], "jpeg": ["dcmcjpeg", "+e1"]}


def load_split(medmnist: pathlib.Path, split: str):
    ds = D.load(medmnist)
    s = getattr(ds, split)
    if len(s.labels) != OFFICIAL_SIZES[split]:
        sys.exit(f"unexpected {split} size {len(s.labels)}")
    return s.images, s.labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--medmnist", required=True, type=pathlib.Path, help="folder with MANIFEST.tsv")
    parser.add_argument("--split", default="test", choices=sorted(OFFICIAL_SIZES))
    parser.add_argument("--out", required=True, type=pathlib.Path, help="drop folder to export into")
    parser.add_argument("--reference", required=True, type=pathlib.Path, help="folder for images.npy, manifest.tsv")
    parser.add_argument("--encodings", default="u8-window",
                        help="comma-separated names or 'all': " + ", ".join(ENCODINGS))
    parser.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    parser.add_argument("--seed", type=int, default=20261126)
    args = parser.parse_args()
    names = list(ENCODINGS) if args.encodings == "all" else args.encodings.split(",")
    unknown = [n for n in names if n not in ENCODINGS]
    if unknown:
        sys.exit(f"unknown encodings {unknown}; known: {', '.join(ENCODINGS)}")

    images, labels = load_split(args.medmnist, args.split)
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    args.reference.mkdir(parents=True, exist_ok=True)
    np.save(args.reference / "images.npy", (images.astype(np.float32) / np.float32(255.0)).reshape(-1, 28, 28, 1))
    np.save(args.reference / "inputs.npy", D.to_input(images))

    rows = []
    patients = 0
    with tempfile.TemporaryDirectory() as scratch, ThreadPoolExecutor(max_workers=2) as pool:
        pending = []
        for encoding in names:
            _, module, compressor = ENCODINGS[encoding]
            index = 0
            while index < len(images):
                patients += 1
                patient_id = f"MRN{rng.randrange(10**7, 10**8)}"
                name = f"{rng.choice(SURNAMES)}^{rng.choice(GIVEN)}"
                sex = rng.choice("FM")
                birth = f"{rng.randrange(2012, 2024)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
                studies = 2 if patients % 3 == 0 else 1  # every third patient comes back for a follow-up
                for visit in range(min(studies, len(images) - index)):
                    study_date = f"2025{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
                    accession = f"A{rng.randrange(10**8, 10**9)}"
                    study_uid, series_uid, sop_uid = generate_uid(), generate_uid(), generate_uid()
                    relative = f"{encoding}/{name.replace('^', '_')}_{patient_id}/{study_date}_{accession}/CR_1/IM0001.dcm"
                    stored, pixel_module = module(images[index], index)
                    if compressor == "text":
                        stored = burn(stored, name, patient_id, study_date)
                    dataset = build(stored, pixel_module, patient_id=patient_id, name=name, sex=sex, birth=birth,
                                    study_date=study_date, accession=accession, study_uid=study_uid,
                                    series_uid=series_uid, sop_uid=sop_uid, study_id=str(visit + 1))
                    target = args.out / relative
                    if compressor in TOOLS:
                        pending.append(pool.submit(compress, dataset, TOOLS[compressor], target, scratch))
                    else:
                        if compressor == "rle":
                            dataset.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)
                        save(dataset, target)
                    rows.append([index, int(labels[index]), patient_id, accession, study_uid, series_uid, sop_uid,
                                 relative, encoding])
                    index += 1
        for future in pending:
            future.result()

    with open(args.reference / "manifest.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["index", "label", "patient_id", "accession_number", "study_uid", "series_uid", "sop_instance_uid",
                    "path", "encoding"])
        w.writerows(rows)
    print(f"wrote {len(rows)} files ({len(images)} images × {len(names)} encodings) for {patients} patients")


def build(stored: np.ndarray, pixel_module: dict, **a: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pixel_module.get("SOPClassUID", CR_IMAGE_STORAGE)
    meta.MediaStorageSOPInstanceUID = a["sop_uid"]
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.SOPClassUID = CR_IMAGE_STORAGE
    ds.SOPInstanceUID = a["sop_uid"]
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = a["study_date"]
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = a["accession"]
    ds.Modality = "CR"
    ds.Manufacturer = "MedMNIST export"
    ds.InstitutionName = "Childrens Hospital"
    ds.ReferringPhysicianName = "Smith^Alex"
    ds.StudyDescription = "XR CHEST PA"
    ds.SeriesDescription = "CHEST PA"
    ds.PatientName = a["name"]
    ds.PatientID = a["patient_id"]
    ds.PatientBirthDate = a["birth"]
    ds.PatientSex = a["sex"]
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.StudyInstanceUID = a["study_uid"]
    ds.SeriesInstanceUID = a["series_uid"]
    ds.StudyID = a["study_id"]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ["L", "F"]
    ds.BurnedInAnnotation = "NO"
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = stored.shape
    for keyword, value in pixel_module.items():
        setattr(ds, keyword, value)
    little = stored.astype(stored.dtype.newbyteorder("<"))
    ds.PixelData = np.ascontiguousarray(little).tobytes()
    return ds


def save(ds: Dataset, path: pathlib.Path) -> None:
    """Writes under a dot-name beside the target, then renames it into place (a watcher sees it whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name("." + path.name + ".part")
    ds.save_as(part, enforce_file_format=True)
    os.rename(part, path)


def compress(ds: Dataset, tool: list[str], path: pathlib.Path, scratch: str) -> None:
    """Compresses with a DCMTK command-line encoder (lossless) into a dot-name, then renames into place."""
    plain = pathlib.Path(scratch) / (ds.SOPInstanceUID + ".dcm")
    ds.save_as(plain, enforce_file_format=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name("." + path.name + ".part")
    subprocess.run(tool + [str(plain), str(part)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.rename(part, path)
    plain.unlink()


if __name__ == "__main__":
    if not shutil.which("dcmcjpeg"):
        print("note: DCMTK's dcmcjpeg/dcmcjpls are needed for the u8-jpeg and u8-jpegls encodings", file=sys.stderr)
    main()
