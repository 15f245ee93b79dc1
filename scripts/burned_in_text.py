#!/usr/bin/env python3
"""Writes DICOM images with text burned into their pixels, and what was planted where.

    burned_in_text.py --out DIR [--medmnist ../shared/data/medmnist] [--corpus DIR] [--count 60] [--no-text 100]

Every file is a Secondary Capture (SOP class 1.2.840.10008.5.1.4.1.1.7) whose header carries a synthetic
patient: name, ID, birth date, accession number, institution, study date. Into the pixels go some of those
values in their common written forms ("SMITH^ANA", "Smith, Ana", "DOB 12/03/1947", "MRN: 48213377",
"ACC# A99381", "St Mary Hospital" ...) and non-identifying free text ("PORTABLE", "AP", "SUPINE", "L"),
with several DejaVu fonts, sizes, positions, polarities and contrasts, on:
  - PneumoniaMNIST chest X-rays (without --medmnist: synthetic chest-like backgrounds) upscaled to 256 x 256 (bicubic), as 8-, 12- and 16-bit MONOCHROME2,
    8-bit MONOCHROME1, RGB (coloured text, as ultrasound and screen captures carry it) and 2-frame images;
  - grayscale images of --corpus (CT, MR, CR, DX of at least 256 pixels a side, first frame), kept at their
    bit depth and sign.
Text always stands out from the pixels under it (its contrast to their median is at least 30 % of the
range): it is meant to be legible, as burned-in annotations are.

--no-text writes that many PneumoniaMNIST images (upscaled, 8-bit, header as above) with no text at all.

The manifest (manifest.json in --out) lists per file its relative path, header values, and every planted
string with its category (name, id, date, accession, institution; free for standalone free text, label for
the free text written before a value: "DOB", "MRN:"), whether it identifies the patient, its frame, its ink box [x, y, width, height] and its ink mask (the pixels at least a quarter
covered by a glyph whose value the text moved by at least 15 % of the range: its visible ink; np.packbits of
the box's rows, base64). Nothing here is real patient data.
"""
import argparse
import base64
import csv
import datetime
import json
import os
import pathlib
import random
import sys
import warnings

import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
FONT_DIR = pathlib.Path("/usr/share/fonts/truetype/dejavu")
FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
         "DejaVuSerif.ttf", "DejaVuSansCondensed.ttf"]
SURNAMES = ["GARCIA", "OKAFOR", "NGUYEN", "SCHMIDT", "ROSSI", "KOWALSKI", "HADDAD", "TANAKA", "SILVA", "JENSEN",
            "DUBOIS", "IVANOVA", "MURPHY", "CHEN", "NOVAK", "MENSAH", "LARSEN", "COSTA", "YILMAZ", "WEBER",
            "FERREIRA", "BAKER", "PETROV", "HUGHES", "MORENO", "KAPOOR", "LINDQVIST", "OCONNOR", "ABARA", "FISCHER"]
GIVEN = ["ANA", "BEN", "CHIDI", "DARA", "ELIF", "FEMI", "GITA", "HUGO", "INES", "JONAS", "KEMAL", "LEA", "MIRA",
         "NOAH", "OLU", "PIA", "QUENTIN", "ROSA", "SAMI", "TARA", "VIKTOR", "WANDA", "YUSUF", "ZOE"]
INSTITUTIONS = ["ST MARY HOSPITAL", "RIVERSIDE CLINIC", "NORTHGATE MEDICAL", "HILLCREST IMAGING", "LAKEVIEW HEALTH"]
FREE_TEXT = ["PORTABLE", "AP", "PA", "SUPINE", "ERECT", "L", "R", "CHEST", "LATERAL", "KV 110", "MAS 2.5",
             "SEMI-ERECT", "INSPIRATION", "GRID"]
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]


def find_npz(medmnist: pathlib.Path) -> pathlib.Path:
    """The PneumoniaMNIST npz with the official 624-image test split, from the folder's MANIFEST.tsv."""
    with open(medmnist / "MANIFEST.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["dataset"] == "PneumoniaMNIST" and int(row["test_n"]) == 624:
                return medmnist.parent / row["path"]
    sys.exit("no PneumoniaMNIST file with the official test split in MANIFEST.tsv")


# ---- the synthetic patient and the ways its values get written ------------------------------------------

def patient(rng: random.Random) -> dict:
    birth = datetime.date(rng.randrange(1925, 2015), rng.randrange(1, 13), rng.randrange(1, 29))
    study = datetime.date(2025, rng.randrange(1, 13), rng.randrange(1, 29))
    surname, given = rng.choice(SURNAMES), rng.choice(GIVEN)
    pid = rng.choice([f"{rng.randrange(10**7, 10**8)}", f"MRN{rng.randrange(10**6, 10**7)}",
                      f"{rng.randrange(100, 999)}-{rng.randrange(10**5, 10**6)}"])
    return {"name": f"{surname}^{given}", "surname": surname, "given": given, "id": pid,
            "birth": birth, "study": study, "accession": f"A{rng.randrange(10**5, 10**7)}",
            "institution": rng.choice(INSTITUTIONS)}


def date_forms(d: datetime.date) -> list:
    m = MONTHS[d.month - 1]
    return [d.strftime("%Y-%m-%d"), d.strftime("%m/%d/%Y"), d.strftime("%d/%m/%Y"), d.strftime("%d.%m.%Y"),
            f"{d.day:02d}-{m.title()}-{d.year}", f"{m.title()} {d.day}, {d.year}", d.strftime("%Y%m%d"),
            f"{d.day:02d} {m} {d.year}"]


def identifying_lines(p: dict, rng: random.Random) -> list:
    """(label or "", value, category) lines; the label is free text drawn before the value."""
    s, g = p["surname"], p["given"]
    name = rng.choice([f"{s}^{g}", f"{s.title()}, {g.title()}", f"{g.title()} {s.title()}", f"{s} {g}", f"{s}, {g}"])
    lines = [
        (rng.choice(["", "", "Name:", "PT:"]), name, "name"),
        (rng.choice(["", "ID:", "MRN:", "Pat ID"]), p["id"], "id"),
        (rng.choice(["", "DOB", "DOB:", "Born"]), rng.choice(date_forms(p["birth"])), "date"),
        (rng.choice(["", "Acc#", "ACC:"]), p["accession"], "accession"),
        ("", rng.choice([p["institution"], p["institution"].title()]), "institution"),
        (rng.choice(["", "Study:"]), rng.choice(date_forms(p["study"])), "date"),
    ]
    rng.shuffle(lines)
    return lines[: rng.choice([2, 3, 3, 4])]


# ---- drawing -------------------------------------------------------------------------------------------

class Canvas:
    """One frame as float samples (H, W, C) in [lo, hi], with the luminance used to pick text values."""

    def __init__(self, pixels: np.ndarray, lo: float, hi: float):
        self.px = pixels.astype(np.float64)
        if self.px.ndim == 2:
            self.px = self.px[:, :, None]
        self.lo, self.hi = lo, hi
        self.taken = np.zeros(self.px.shape[:2], dtype=bool)

    @property
    def height(self):
        return self.px.shape[0]

    @property
    def width(self):
        return self.px.shape[1]

    def luminance(self) -> np.ndarray:
        y = self.px.mean(axis=2) if self.px.shape[2] == 3 else self.px[:, :, 0]
        return (y - self.lo) / (self.hi - self.lo)

    def mask(self, x: int, y: int, text: str, font) -> np.ndarray:
        """The alpha (H, W) in [0, 1] of `text` drawn at (x, y)."""
        mask = Image.new("L", (self.width, self.height), 0)
        ImageDraw.Draw(mask).text((x, y), text, fill=255, font=font)
        return np.asarray(mask, dtype=np.float64) / 255.0

    def style(self, alpha: np.ndarray, rng: random.Random) -> np.ndarray:
        """The sample values of a line whose ink is `alpha`: bright on dark pixels (mostly), dark on bright,
        at full intensity or part of the way from the median of the pixels under it (at least 30 % away)."""
        background = float(np.median(self.luminance()[alpha >= 0.25]))
        contrast = rng.choice([1.0, 1.0, 0.6, 0.45])
        bright = background < 0.5 if rng.random() < 0.85 else background < 0.3
        target = background + (1.0 - background) * contrast if bright else background * (1.0 - contrast)
        if abs(target - background) < 0.3:
            target = 1.0 if bright else 0.0
        value = self.lo + target * (self.hi - self.lo)
        if self.px.shape[2] == 3 and bright:
            colour = np.array(rng.choice([(1, 1, 1), (1, 1, 0), (0, 1, 1), (0.4, 1, 0.4), (1, 0.85, 0.5)]))
            return self.lo + (value - self.lo) * colour
        return np.full(self.px.shape[2], value)

    def visible(self, alpha: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Ink pixels (at least a quarter covered) whose value moves by at least 15 % of the range."""
        text = (float(value.mean()) - self.lo) / (self.hi - self.lo)
        return (alpha >= 0.25) & (np.abs(self.luminance() - text) * np.minimum(1.0, alpha / 0.5) >= 0.15)

    def paint(self, alpha: np.ndarray, value: np.ndarray) -> None:
        self.px = self.px * (1 - alpha[:, :, None]) + value[None, None, :] * alpha[:, :, None]


def place(canvas: Canvas, items: list, rng: random.Random, size_range: tuple) -> list:
    """Draws lines of (label, value, category) in free spots; returns the planted strings."""
    planted = []
    for label, value, category in items:
        for _ in range(40):
            font = ImageFont.truetype(str(FONT_DIR / rng.choice(FONTS)), rng.randrange(*size_range))
            line = f"{label} {value}" if label else value
            left, top, right, bottom = font.getbbox(line)
            w, h = right - left, bottom - top
            if w + 8 > canvas.width:
                continue
            edge = rng.random() < 0.8  # annotations sit near the edges; some float inside the image
            x = rng.choice([rng.randrange(2, 12), canvas.width - w - rng.randrange(2, 12)]) if edge else rng.randrange(2, canvas.width - w - 2)
            y = rng.randrange(2, canvas.height - h - 2)
            gap = max(4, h // 3)  # lines keep apart by a third of their height, as annotations do
            y0, y1, x0, x1 = max(0, y - gap), min(canvas.height, y + h + gap), max(0, x - 2 * gap), min(canvas.width, x + w + 2 * gap)
            if canvas.taken[y0:y1, x0:x1].any():
                continue
            canvas.taken[y0:y1, x0:x1] = True
            parts = [(label, "label", False, 0.0)] if label else []
            parts.append((value, category, category != "free", font.getlength(label + " ") if label else 0.0))
            line_alpha = canvas.mask(x - left, y - top, line, font)
            value_style = canvas.style(line_alpha, rng)
            if canvas.visible(line_alpha, value_style).sum() < 0.9 * (line_alpha >= 0.25).sum():
                continue  # a line must stand out over its whole length (not half lost over a bright bone)
            # Each part is drawn on its own, at its offset in the line, so that each has its own ink box.
            for text, cat, identifying, offset in parts:
                alpha = canvas.mask(int(round(x - left + offset)), y - top, text, font)
                if not (alpha >= 0.25).any():
                    continue
                visible = canvas.visible(alpha, value_style)
                canvas.paint(alpha, value_style)
                planted.append(record(text, cat, identifying, visible))
            break
    return planted


def record(text: str, category: str, identifying: bool, ink: np.ndarray) -> dict:
    ys, xs = np.nonzero(ink)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    box = ink[y0:y1, x0:x1]
    return {"text": text, "category": category, "identifying": identifying, "box": [x0, y0, x1 - x0, y1 - y0],
            "mask": base64.b64encode(np.packbits(box, axis=1).tobytes()).decode()}


# ---- bases ---------------------------------------------------------------------------------------------

def synthetic_images(rng: random.Random, count: int) -> np.ndarray:
    """28 x 28 grey images standing in for PneumoniaMNIST where it is absent: a bright mediastinum between two darker
    lung fields, a vertical gradient and noise."""
    out = np.zeros((count, 28, 28), dtype=np.uint8)
    y, x = np.mgrid[0:28, 0:28].astype(np.float64)
    for i in range(count):
        r = np.random.default_rng(rng.randrange(2**32))
        base = 120 + 60 * np.exp(-((x - 14 + r.normal(0, 1.5)) ** 2) / (2 * r.uniform(3, 6) ** 2))
        for side in (-1, 1):
            cx, cy = 14 + side * r.uniform(6, 8), r.uniform(11, 16)
            base -= r.uniform(40, 90) * np.exp(-(((x - cx) / r.uniform(3, 5)) ** 2 + ((y - cy) / r.uniform(6, 9)) ** 2) / 2)
        base += (y - 14) * r.uniform(-1.5, 1.5) + r.normal(0, 6, size=(28, 28))
        out[i] = np.clip(base, 0, 255).astype(np.uint8)
    return out


def upscale(image: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC), dtype=np.float64)


def corpus_images(root: pathlib.Path, rng: random.Random, count: int) -> list:
    """Grayscale frames of at least 256 pixels a side that pydicom decodes: (pixels, bits, signed, source)."""
    found = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix.lower() in (".tsv", ".md", ".txt", ".json") or "Deeply-Nested" in path.name:
            continue
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if ds.get("SamplesPerPixel", 1) != 1 or "Rows" not in ds or "BitsAllocated" not in ds:
                continue
            if min(int(ds.Rows), int(ds.Columns)) < 256 or int(ds.BitsAllocated) not in (8, 16):
                continue
            if str(ds.get("Modality", "")) not in ("CT", "MR", "CR", "DX", "MG"):
                continue
            found.append(path)
        except Exception:
            continue
    rng.shuffle(found)
    out = []
    for path in found:
        if len(out) >= count:
            break
        try:
            ds = pydicom.dcmread(path)
            px = ds.pixel_array
            if px.ndim == 3:
                px = px[0]
            if px.ndim != 2 or px.max() == px.min():
                continue
            out.append((px, int(ds.BitsStored), int(ds.PixelRepresentation) == 1, str(ds.Modality)))
        except Exception:
            continue
    return out


# ---- writing -------------------------------------------------------------------------------------------

def write(path: pathlib.Path, frames: list, p: dict, bits: int, signed: bool, photometric: str, modality: str) -> None:
    samples = 3 if photometric == "RGB" else 1
    meta = FileMetaDataset()
    uid = generate_uid()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SOPClassUID = SECONDARY_CAPTURE
    ds.SOPInstanceUID = uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = p["study"].strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = p["accession"]
    ds.Modality = modality
    ds.ConversionType = "WSD"
    ds.InstitutionName = p["institution"]
    ds.PatientName = p["name"]
    ds.PatientID = p["id"]
    ds.PatientBirthDate = p["birth"].strftime("%Y%m%d")
    ds.PatientSex = "F"
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.BurnedInAnnotation = "YES"
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = frames[0].shape[:2]
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    allocated = 8 if bits <= 8 else 16
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, bits, bits - 1
    ds.PixelRepresentation = 1 if signed else 0
    dtype = {(8, False): np.uint8, (16, False): np.uint16, (16, True): np.int16}[(allocated, signed)]
    ds.PixelData = np.ascontiguousarray(np.stack(frames), dtype=dtype).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name("." + path.name + ".part")
    ds.save_as(part, enforce_file_format=True)
    os.rename(part, path)


def header(p: dict) -> dict:
    return {"patient_name": p["name"], "patient_id": p["id"], "birth_date": p["birth"].strftime("%Y%m%d"),
            "study_date": p["study"].strftime("%Y%m%d"), "accession": p["accession"], "institution": p["institution"]}


def plant_frame(base: np.ndarray, lo: float, hi: float, p: dict, rng: random.Random, size_range: tuple):
    canvas = Canvas(base, lo, hi)
    items = identifying_lines(p, rng) + [("", rng.choice(FREE_TEXT), "free") for _ in range(rng.choice([1, 2]))]
    planted = place(canvas, items, rng, size_range)
    return canvas.px, planted


def finish(px: np.ndarray, lo: float, hi: float) -> np.ndarray:
    out = np.clip(np.rint(px), lo, hi)
    return out[:, :, 0] if out.shape[2] == 1 else out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--medmnist", type=pathlib.Path, help="folder with MANIFEST.tsv (absent: synthetic backgrounds)")
    parser.add_argument("--corpus", type=pathlib.Path, help="DICOM folder for grayscale bases")
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--count", type=int, default=60, help="images with text")
    parser.add_argument("--no-text", type=int, default=0, help="images without text")
    parser.add_argument("--seed", type=int, default=20261127)
    args = parser.parse_args()

    warnings.filterwarnings("ignore")  # pydicom on odd corpus files
    rng = random.Random(args.seed)
    images = np.load(find_npz(args.medmnist))["test_images"] if args.medmnist else synthetic_images(rng, 400)
    order = list(range(len(images)))
    rng.shuffle(order)
    corpus = corpus_images(args.corpus, rng, max(1, args.count // 6)) if args.corpus else []
    kinds = ["8bit", "12bit", "16bit", "rgb", "corpus", "8bit", "mono1", "2frame", "16bit", "rgb", "corpus", "8bit"]
    entries = []
    next_image = 0

    def medmnist_image():
        nonlocal next_image
        img = images[order[next_image % len(order)]]
        next_image += 1
        return upscale(img, 256)

    for i in range(args.count):
        p = patient(rng)
        kind = kinds[i % len(kinds)]
        if kind == "corpus" and not corpus:
            kind = "8bit"
        if kind == "corpus":
            px, bits, signed, modality = corpus[(i // 6) % len(corpus)]
            lo, hi = float(px.min()), float(px.max())
            side = min(px.shape)
            sizes = (max(12, side // 45), max(16, side // 22))
            frame, planted = plant_frame(px, lo, hi, p, rng, sizes)
            frames, photometric, kind = [finish(frame, lo, hi)], "MONOCHROME2", f"corpus-{modality}-{bits}bit"
            for s in planted:
                s["frame"] = 0
        else:
            bits, signed, modality = {"12bit": 12, "16bit": 16}.get(kind, 8), False, "OT"
            hi = float(2**bits - 1)
            count = 2 if kind == "2frame" else 1
            frames, planted = [], []
            for f in range(count):
                base = medmnist_image() / 255.0 * hi
                if kind == "mono1":
                    base = hi - base
                if kind == "rgb":
                    base = np.repeat(base[:, :, None], 3, axis=2)
                frame, strings = plant_frame(base, 0.0, hi, p, rng, (11, 19))
                for s in strings:
                    s["frame"] = f
                frames.append(finish(frame, 0.0, hi))
                planted += strings
            photometric = {"rgb": "RGB", "mono1": "MONOCHROME1"}.get(kind, "MONOCHROME2")
        relative = f"text/{i:03d}-{kind}.dcm"
        write(args.out / relative, frames, p, bits, signed, photometric, modality)
        entries.append({"path": relative, "kind": kind, "header": header(p), "planted": planted})

    for i in range(args.no_text):
        p = patient(rng)
        frame = finish(medmnist_image()[:, :, None], 0.0, 255.0)
        relative = f"no-text/{i:03d}.dcm"
        write(args.out / relative, [frame], p, 8, False, "MONOCHROME2", "OT")
        entries.append({"path": relative, "kind": "no-text", "header": header(p), "planted": []})

    with open(args.out / "manifest.json", "w") as f:
        json.dump({"files": entries}, f, indent=1)
    planted = sum(len(e["planted"]) for e in entries)
    identifying = sum(s["identifying"] for e in entries for s in e["planted"])
    print(f"wrote {len(entries)} files: {planted} strings planted, {identifying} identifying")


if __name__ == "__main__":
    main()
