#!/usr/bin/env python3
"""Writes a PneumoniaMNIST split as a PACS export of chest radiographs: one DICOM CR file per image.

    medmnist-to-dicom.py --medmnist ../shared/data/medmnist --split test --out DROP --reference DIR

The npz is the one MANIFEST.tsv lists for PneumoniaMNIST whose split has the official size (624 test,
524 val). The export looks like a real one: folders named after the (synthetic) patient, then the study,
then the series; a patient has one or two studies (admission, follow-up); each study holds one CR series
of one frontal image. Files: explicit VR little endian, CR Image Storage, Modality CR, BodyPartExamined
CHEST, MONOCHROME2, 8 bits, 28x28, WindowCenter 128 / WindowWidth 256 (the full 8-bit range, so that
display value = grey level / 255). Each file is written under a dot-name and renamed into place.

Into --reference it writes what a test compares the pipeline's output with:
  images.npy    float32 (N, 28, 28, 1), grey level / 255 (the model's input contract)
  manifest.tsv  index, label, patient_id, accession_number, study_uid, series_uid, sop_instance_uid, path
"""
import argparse
import csv
import os
import pathlib
import random
import sys

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
OFFICIAL_SIZES = {"test": 624, "val": 524}
SURNAMES = ["Garcia", "Okafor", "Nguyen", "Schmidt", "Rossi", "Kowalski", "Haddad", "Tanaka", "Silva", "Jensen",
            "Dubois", "Ivanova", "Murphy", "Chen", "Novak", "Mensah", "Larsen", "Costa", "Yilmaz", "Weber"]
GIVEN = ["Ana", "Ben", "Chidi", "Dara", "Elif", "Femi", "Gita", "Hugo", "Ines", "Jon", "Kemal", "Lea", "Mira",
         "Noah", "Olu", "Pia", "Quentin", "Rosa", "Sami", "Tara"]


def find_npz(medmnist: pathlib.Path, split: str) -> pathlib.Path:
    """The PneumoniaMNIST npz whose `split` has the official size, from the folder's MANIFEST.tsv."""
    with open(medmnist / "MANIFEST.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["dataset"] == "PneumoniaMNIST" and int(row[f"{split}_n"]) == OFFICIAL_SIZES[split]:
                return medmnist.parent / row["path"]
    sys.exit(f"no PneumoniaMNIST file with the official {split} split in MANIFEST.tsv")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--medmnist", required=True, type=pathlib.Path, help="folder with MANIFEST.tsv")
    parser.add_argument("--split", default="test", choices=sorted(OFFICIAL_SIZES))
    parser.add_argument("--out", required=True, type=pathlib.Path, help="drop folder to export into")
    parser.add_argument("--reference", required=True, type=pathlib.Path, help="folder for images.npy, manifest.tsv")
    parser.add_argument("--seed", type=int, default=20261126)
    args = parser.parse_args()

    data = np.load(find_npz(args.medmnist, args.split))
    images = data[f"{args.split}_images"]
    labels = data[f"{args.split}_labels"].reshape(-1)
    if images.shape != (OFFICIAL_SIZES[args.split], 28, 28) or images.dtype != np.uint8:
        sys.exit(f"unexpected {args.split} images {images.shape} {images.dtype}")
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    args.reference.mkdir(parents=True, exist_ok=True)
    np.save(args.reference / "images.npy", (images.astype(np.float32) / 255.0).reshape(-1, 28, 28, 1))

    rows = []
    index = 0
    patient = 0
    while index < len(images):
        patient += 1
        patient_id = f"MRN{rng.randrange(10**7, 10**8)}"
        name = f"{rng.choice(SURNAMES)}^{rng.choice(GIVEN)}"
        sex = rng.choice("FM")
        birth = f"{rng.randrange(2012, 2024)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
        studies = 2 if patient % 3 == 0 else 1  # every third patient comes back for a follow-up
        for visit in range(min(studies, len(images) - index)):
            study_date = f"2025{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
            accession = f"A{rng.randrange(10**8, 10**9)}"
            study_uid, series_uid, sop_uid = generate_uid(), generate_uid(), generate_uid()
            relative = f"{name.replace('^', '_')}_{patient_id}/{study_date}_{accession}/CR_1/IM0001.dcm"
            write(args.out / relative, images[index], patient_id=patient_id, name=name, sex=sex, birth=birth,
                  study_date=study_date, accession=accession, study_uid=study_uid, series_uid=series_uid,
                  sop_uid=sop_uid, study_id=str(visit + 1))
            rows.append([index, int(labels[index]), patient_id, accession, study_uid, series_uid, sop_uid, relative])
            index += 1

    with open(args.reference / "manifest.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["index", "label", "patient_id", "accession_number", "study_uid", "series_uid", "sop_instance_uid", "path"])
        w.writerows(rows)
    print(f"wrote {len(rows)} files for {patient} patients")


def write(path: pathlib.Path, pixels: np.ndarray, **a: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CR_IMAGE_STORAGE
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
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.WindowCenter = 128
    ds.WindowWidth = 256
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name("." + path.name + ".part")
    ds.save_as(part, enforce_file_format=True)
    os.rename(part, path)


if __name__ == "__main__":
    main()
