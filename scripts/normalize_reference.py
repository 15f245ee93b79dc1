#!/usr/bin/env python3
"""Independent reference for dicom-etl's normalisation recipes (etl/normalize/*.yaml).

Decodes with pydicom (+ pylibjpeg), applies pydicom's apply_modality_lut and apply_voi_lut, then the
recipe's rules in NumPy: MONOCHROME1 inversion, colour to grey (BT.601 luma) or RGB, centre crop /
pad to square, area resize (exact box filter with fractional coverage), intensity, dtype.

  normalize_reference.py --recipe etl/normalize/cxr-28.yaml --out DIR FILE...     one line of JSON per file
  normalize_reference.py --recipe ct-hu-volume.yaml --out DIR --series FILE...    the files as one volume
  normalize_reference.py --recipe ... --bench SECONDS FILE...                     tensors/s (no output files)
  normalize_reference.py --recipe ... --hash                                      the recipe's content hash

As a module, `normalize_stored(stored, pixel_module(...), load_recipe(path))` runs a recipe on stored values
without a file: models/pneumonia_cnn/data.py builds the model's training inputs with it.

Each JSON line: {"index": i, "status": "ok", "outputs": [paths], "shape": [...], "window": {...}} or
{"index": i, "status": "excluded", "reason": "..."}; outputs are .npy files named <index>_<frame>.npy.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import pydicom
import yaml
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian


def load_recipe(path):
    with open(path) as f:
        r = yaml.safe_load(f)
    out = r.get("output") or {}
    size = out.get("size")
    return {
        "name": r["name"],
        "size": tuple(size) if size else None,
        "dtype": out.get("dtype", "float32"),
        "frames": r.get("frames", "separate"),
        "crop": r.get("crop", "none"),
        "window": r.get("window") or {"source": "from-dicom"},
        "voi": r.get("voi-function", "from-dicom"),
        "colour": r.get("colour", "grayscale"),
        "intensity": r.get("intensity") or {"mode": "unit"},
        "spacing": r.get("spacing"),
    }


def _num(d):
    d = float(d)
    return str(int(d)) if d == round(d) and abs(d) < 1e15 else repr(d)


def recipe_hash(path):
    """sha256 of the recipe's canonical form: the same sorted-key JSON of every parameter, defaults spelled out,
    that `Recipe.contentHash` hashes in Swift (a tensor's sidecar and a model's metadata record it)."""
    import hashlib
    with open(path) as f:
        r = yaml.safe_load(f)
    out = r.get("output") or {}
    nums = lambda a: "[" + ",".join(_num(v) for v in (a if isinstance(a, list) else [a])) + "]"
    parts = [f'"colour":"{r.get("colour", "grayscale")}"', f'"crop":"{r.get("crop", "none")}"',
             f'"dtype":"{out.get("dtype", "float32")}"', f'"frames":"{r.get("frames", "separate")}"']
    i = r.get("intensity") or {"mode": "unit"}
    ip = [f'"mode":"{i["mode"]}"']
    if i["mode"] == "fixed":
        ip = [f'"mean":{nums(i.get("mean", []))}'] + ip + [f'"std":{nums(i.get("std", []))}']
    parts.append('"intensity":{' + ",".join(ip) + "}")
    parts.append(f'"name":"{r["name"]}"')
    if out.get("size"):
        parts.append(f'"output_size":[{out["size"][0]},{out["size"][1]}]')
    parts.append(f'"resize":"{r.get("resize", "area")}"')
    if r.get("spacing"):
        parts.append(f'"spacing":{nums(r["spacing"])}')
    parts.append(f'"voi_function":"{r.get("voi-function", "from-dicom")}"')
    w = r.get("window")
    if w is None:
        w = {"source": "from-dicom", "fallback": "full-range"}  # the Swift default window
    wp = []
    if w.get("center") is not None:
        wp.append(f'"center":{_num(w["center"])}')
    if w.get("fallback") is not None:
        wp.append(f'"fallback":"{w["fallback"]}"')
    wp += [f'"index":{int(w.get("index", 0))}', f'"source":"{w["source"]}"']
    if w.get("width") is not None:
        wp.append(f'"width":{_num(w["width"])}')
    parts.append('"window":{' + ",".join(wp) + "}")
    return hashlib.sha256(("{" + ",".join(parts) + "}").encode()).hexdigest()


# ---------------------------------------------------------------- per-frame attribute views

VIEW_KEYWORDS = ["PhotometricInterpretation", "BitsStored", "BitsAllocated", "PixelRepresentation",
                 "RescaleSlope", "RescaleIntercept", "ModalityLUTSequence", "WindowCenter", "WindowWidth",
                 "VOILUTFunction", "VOILUTSequence", "SamplesPerPixel"]


def frame_view(ds, frame):
    """A small dataset with the attributes that govern one frame (functional groups override the top level)."""
    view = Dataset()
    for kw in VIEW_KEYWORDS:
        if kw in ds:
            setattr(view, kw, ds.data_element(kw).value)
            view[kw].VR = ds[kw].VR
    groups = []
    if "SharedFunctionalGroupsSequence" in ds and len(ds.SharedFunctionalGroupsSequence):
        groups.append(ds.SharedFunctionalGroupsSequence[0])
    if "PerFrameFunctionalGroupsSequence" in ds and frame < len(ds.PerFrameFunctionalGroupsSequence):
        groups.append(ds.PerFrameFunctionalGroupsSequence[frame])
    for g in groups:
        if "PixelValueTransformationSequence" in g and len(g.PixelValueTransformationSequence):
            t = g.PixelValueTransformationSequence[0]
            for kw in ("RescaleSlope", "RescaleIntercept"):
                if kw in t:
                    setattr(view, kw, t.get(kw))
        if "FrameVOILUTSequence" in g and len(g.FrameVOILUTSequence):
            v = g.FrameVOILUTSequence[0]
            for kw in ("WindowCenter", "WindowWidth", "VOILUTFunction"):
                if kw in v:
                    setattr(view, kw, v.get(kw))
    # Slope 1 / intercept 0 when one of them is missing (pydicom applies a rescale only with both).
    if ("RescaleSlope" in view) != ("RescaleIntercept" in view):
        if "RescaleSlope" not in view:
            view.RescaleSlope = 1
        if "RescaleIntercept" not in view:
            view.RescaleIntercept = 0
    meta = FileMetaDataset()
    little = ds.original_encoding[1] if ds.original_encoding[1] is not None else True
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
    view.file_meta = meta
    return view


def number_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        return [float(v) for v in value]
    return [float(value)]


# ---------------------------------------------------------------- value stages

def modality_range(view):
    """The modality values the stored bit range maps to, lowest first (the `bit-range` window): 0…2^bits − 1
    (or the signed range) through RescaleSlope/Intercept, or 0…2^bits − 1 of a Modality LUT's descriptor."""
    if view.get("ModalityLUTSequence") and "LUTData" in view.ModalityLUTSequence[0]:
        lo, hi = 0.0, 2.0 ** min(16, max(1, int(view.ModalityLUTSequence[0].LUTDescriptor[2]))) - 1
    else:
        bits = min(32, max(1, int(view.BitsStored)))
        signed = int(view.get("PixelRepresentation", 0) or 0) == 1
        s0, s1 = (-(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1) if signed else (0.0, 2.0 ** bits - 1)
        slope = float(view.get("RescaleSlope", 1) if view.get("RescaleSlope") is not None else 1)
        intercept = float(view.get("RescaleIntercept", 0) if view.get("RescaleIntercept") is not None else 0)
        if not np.isfinite(slope):
            slope = 1.0
        if not np.isfinite(intercept):
            intercept = 0.0
        y0, y1 = s0 * slope + intercept, s1 * slope + intercept
        lo, hi = min(y0, y1), max(y0, y1)
    return lo, (hi if hi > lo else lo + 1)


def display_grey(arr, ds, frame, recipe):
    """Stored values of one monochrome frame → display values in [0, 1] and the window applied."""
    view = frame_view(ds, frame)
    x = apply_modality_lut(arr, view).astype(np.float64)
    w = recipe["window"]
    index = int(w.get("index", 0))

    def bit_range():
        lo, hi = modality_range(view)
        y = np.clip((x - lo) / (hi - lo), 0, 1)
        return y, {"source": "bit-range", "center": lo + (hi - lo) / 2, "width": hi - lo}

    def full_range():
        lo, hi = float(x.min()), float(x.max())
        y = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
        return y, {"source": "min-max", "center": lo + (hi - lo) / 2, "width": hi - lo}

    def windowed(center, width, function):
        v = Dataset()
        for kw in ("PhotometricInterpretation", "BitsStored", "PixelRepresentation", "RescaleSlope",
                   "RescaleIntercept", "ModalityLUTSequence"):
            if kw in view:
                setattr(v, kw, view.get(kw))
        v.WindowCenter = center
        v.WindowWidth = width
        v.VOILUTFunction = function
        v.PhotometricInterpretation = "MONOCHROME2"
        y = apply_voi_lut(x.copy(), v, index=0)
        # pydicom's output range [y_min, y_max] (PS3.3 C.11.2.1.2) back to [0, 1].
        bits = int(view.BitsStored)
        if view.get("ModalityLUTSequence"):
            y_min, y_max = 0.0, 2.0 ** view.ModalityLUTSequence[0].LUTDescriptor[2] - 1
        elif int(view.PixelRepresentation) == 0:
            y_min, y_max = 0.0, 2.0 ** bits - 1
        else:
            y_min, y_max = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
        if view.get("RescaleSlope") is not None and view.get("RescaleIntercept") is not None:
            s, b = float(view.RescaleSlope), float(view.RescaleIntercept)
            y_min, y_max = y_min * s + b, y_max * s + b
        return np.clip((y - y_min) / (y_max - y_min), 0, 1), {
            "source": "dicom-window", "center": center, "width": width, "function": function}

    def fixed():
        fn = {"linear": "LINEAR", "sigmoid": "SIGMOID"}.get(recipe["voi"], "LINEAR_EXACT")
        y, info = windowed(float(w["center"]), float(w["width"]), fn)
        info["source"] = "fixed"
        return y, info

    def fallback():
        return {"fixed": fixed, "bit-range": bit_range}.get(w.get("fallback"), full_range)()

    if w["source"] == "fixed":
        y, info = fixed()
    elif w["source"] == "full-range":
        y, info = full_range()
    elif w["source"] == "bit-range":
        y, info = bit_range()
    elif view.get("VOILUTSequence"):
        item = view.VOILUTSequence[min(index, len(view.VOILUTSequence) - 1)]
        bits = int(item.LUTDescriptor[2])
        # pydicom's apply_voi indexes with unsigned integers: feed it the modality values floored.
        y = apply_voi_lut(np.floor(x).astype(np.int64), view, index=min(index, len(view.VOILUTSequence) - 1))
        y = np.clip(y.astype(np.float64) / (2.0 ** min(16, max(1, bits)) - 1), 0, 1)
        info = {"source": "dicom-voi-lut"}
    else:
        centers = number_list(view.get("WindowCenter"))
        widths = number_list(view.get("WindowWidth"))
        if not centers or not widths:
            y, info = fallback()
        else:
            c = centers[min(index, len(centers) - 1)]
            wd = widths[min(index, len(widths) - 1)]
            fn = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}.get(
                recipe["voi"], str(view.get("VOILUTFunction", "LINEAR") or "LINEAR").upper())
            ok = (wd >= 1) if fn == "LINEAR" else (wd > 0)
            if ok and np.isfinite(c) and np.isfinite(wd):
                y, info = windowed(c, wd, fn)
            else:
                y, info = fallback()
    if str(view.PhotometricInterpretation).upper() == "MONOCHROME1":
        y = 1 - y
        info["inverted"] = True
    return y, info


def display_colour(arr, ds, recipe):
    """RGB (pydicom converts YBR to RGB while decoding) or palette colour → [0, 1] RGB, or luma."""
    pi = str(ds.PhotometricInterpretation).upper()
    if pi == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds).astype(np.float64)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        rgb = np.clip(rgb / (2.0 ** bits - 1), 0, 1)
    else:
        rgb = arr.astype(np.float64) / (2.0 ** int(ds.BitsStored) - 1)
    if recipe["colour"] == "grayscale":
        return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return rgb


# ---------------------------------------------------------------- geometry

def area_matrix(n_in, n_out):
    """(n_out × n_in) weights: output i averages [i·s, (i+1)·s), s = n_in / n_out, by covered length."""
    s = n_in / n_out
    lo = np.arange(n_out, dtype=np.float64)[:, None] * s
    hi = np.minimum(lo + s, n_in)
    hi[-1, 0] = n_in
    j = np.arange(n_in, dtype=np.float64)[None, :]
    cover = np.clip(np.minimum(hi, j + 1) - np.maximum(lo, j), 0, None)
    return cover / (hi - lo)


def area_resize(img, rows, cols):
    if img.shape[0] == rows and img.shape[1] == cols:
        return img
    a, b = area_matrix(img.shape[0], rows), area_matrix(img.shape[1], cols)
    if img.ndim == 2:
        return a @ img @ b.T
    return np.einsum("ri,ijc,sj->rsc", a, img, b)


def square(img, mode):
    h, w = img.shape[:2]
    if mode == "centre-square":
        side = min(h, w)
        t, l = (h - side) // 2, (w - side) // 2
        return img[t:t + side, l:l + side]
    if mode == "pad-square":
        side = max(h, w)
        out = np.zeros((side, side) + img.shape[2:], dtype=img.dtype)
        t, l = (side - h) // 2, (side - w) // 2
        out[t:t + h, l:l + w] = img
        return out
    return img


def pixel_spacing(ds):
    for kw in ("PixelSpacing", "ImagerPixelSpacing"):
        v = ds.get(kw)
        if v is not None and len(v) >= 2 and float(v[0]) > 0 and float(v[1]) > 0:
            return [float(v[0]), float(v[1])]
    for seq in ("SharedFunctionalGroupsSequence",):
        if seq in ds and len(ds[seq].value) and "PixelMeasuresSequence" in ds[seq][0]:
            v = ds[seq][0].PixelMeasuresSequence[0].get("PixelSpacing")
            if v is not None and len(v) >= 2:
                return [float(v[0]), float(v[1])]
    return None


def resampled(n, spacing, target):
    return max(1, int(np.floor(n * spacing / target + 0.5)))


def geometry(img, recipe, spacing):
    img = square(img, recipe["crop"])
    if recipe["spacing"] and spacing:
        target = recipe["spacing"][-2:]
        img = area_resize(img, resampled(img.shape[0], spacing[0], target[0]),
                          resampled(img.shape[1], spacing[1], target[1]))
    if recipe["size"]:
        img = area_resize(img, recipe["size"][0], recipe["size"][1])
    return img


def finish(x, recipe):
    if recipe["colour"] == "rgb" and (x.ndim == 2 or x.shape[-1] != 3 or recipe["frames"] != "separate" and x.ndim == 3):
        x = np.repeat(x[..., None], 3, axis=-1)
    i = recipe["intensity"]
    if i["mode"] == "zscore":
        sd = x.std()
        x = (x - x.mean()) / (sd if sd > 0 else 1)
    elif i["mode"] == "fixed":
        mean = np.asarray(i["mean"] if isinstance(i["mean"], list) else [i["mean"]], dtype=np.float64)
        std = np.asarray(i["std"] if isinstance(i["std"], list) else [i["std"]], dtype=np.float64)
        x = (x - mean) / std if len(mean) > 1 else (x - mean[0]) / std[0]
    if recipe["dtype"] == "uint8":
        return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    return x.astype(np.float32)


# ---------------------------------------------------------------- stored pixels without a file

def pixel_module(photometric="MONOCHROME2", bits_stored=8, signed=False, **attributes):
    """The attributes of a monochrome image's pixel module as a pydicom Dataset (keywords as in PS3.6, e.g.
    RescaleSlope=2, WindowCenter=128, WindowWidth=256), for `normalize_stored`."""
    ds = Dataset()
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 8 if bits_stored <= 8 else 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def normalize_stored(stored, attributes, recipe):
    """One monochrome frame's stored values (H×W) with its pixel-module attributes → the recipe's tensor:
    the same stages `normalize_file` runs on a decoded file, so a model trained on `normalize_stored` of its
    images sees what the worker is served from DICOM files of the same pixels."""
    y, _ = display_grey(np.asarray(stored), attributes, 0, recipe)
    return finish(geometry(y, recipe, pixel_spacing(attributes)), recipe)


# ---------------------------------------------------------------- files and series

def frames_of(ds):
    arr = ds.pixel_array
    n = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1))
    if n == 1:
        arr = arr[None, ...]
    if spp == 1 and arr.ndim == 4:
        arr = arr[..., 0]
    return arr


def display_frame(arr, ds, k, recipe):
    pi = str(ds.PhotometricInterpretation).upper()
    if pi in ("MONOCHROME1", "MONOCHROME2"):
        return display_grey(arr, ds, k, recipe)
    if pi in ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420", "PALETTE COLOR"):
        return display_colour(arr, ds, recipe), {"source": "none"}
    raise ValueError("unsupported photometric interpretation")


def read(path):
    """Reads a file, also without a preamble or file meta (the transfer syntax then comes from the encoding)."""
    ds = pydicom.dcmread(path, force=True)
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return ds


def normalize_file(path, recipe):
    ds = read(path)
    if "PixelData" not in ds:
        raise LookupError("no pixel data")
    frames = frames_of(ds)
    spacing = pixel_spacing(ds)
    tensors, info = [], None
    for k in range(frames.shape[0]):
        y, info0 = display_frame(frames[k], ds, k, recipe)
        info = info or info0
        tensors.append(finish(geometry(y, recipe, spacing), recipe))
    if recipe["frames"] in ("stack", "volume"):
        return [np.stack(tensors)], info
    return tensors, info


def slice_key(ds):
    iop = [float(v) for v in ds.ImageOrientationPatient]
    ipp = [float(v) for v in ds.ImagePositionPatient]
    n = np.cross(iop[:3], iop[3:])
    return float(np.dot(n, ipp))


def normalize_series(paths, recipe):
    dss = [read(p) for p in paths]
    order = sorted(range(len(dss)), key=lambda i: (slice_key(dss[i]), i))
    pos = [slice_key(dss[i]) for i in order]
    slices, info = [], None
    for i in order:
        ds = dss[i]
        y, info0 = display_frame(frames_of(ds)[0], ds, 0, recipe)
        info = info or info0
        slices.append(geometry(y, recipe, pixel_spacing(ds)))
    vol = np.stack(slices)
    steps = np.diff(pos)
    if recipe["frames"] == "volume" and recipe["spacing"] and len(recipe["spacing"]) == 3 and len(steps):
        real = steps[steps >= 0.01]
        dz = float(dss[order[0]].get("SpacingBetweenSlices") or 0) or (float(np.median(real)) if len(real) else 0)
        if dz > 0:
            nd = resampled(vol.shape[0], dz, recipe["spacing"][0])
            vol = np.tensordot(area_matrix(vol.shape[0], nd), vol, axes=(1, 0))
    return finish(vol, recipe), info, order


def write_npy(path, arr):
    np.save(path, np.ascontiguousarray(arr))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", required=True)
    ap.add_argument("--out")
    ap.add_argument("--series", action="store_true")
    ap.add_argument("--bench", type=float, default=0)
    ap.add_argument("--hash", action="store_true")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    if args.hash:
        print(recipe_hash(args.recipe))
        return
    recipe = load_recipe(args.recipe)
    files = args.files
    if not files:
        files = [line.strip() for line in sys.stdin if line.strip()]

    if args.bench:
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.bench:
            if args.series:
                normalize_series(files, recipe)
                count += 1
            else:
                for p in files:
                    count += len(normalize_file(p, recipe)[0])
        elapsed = time.perf_counter() - start
        print(json.dumps({"tensors": count, "seconds": elapsed, "tensors_per_second": count / elapsed}))
        return

    if args.series:
        t, info, order = normalize_series(files, recipe)
        out = os.path.join(args.out, "volume.npy")
        write_npy(out, t)
        print(json.dumps({"status": "ok", "outputs": [out], "shape": list(t.shape), "order": order, "window": info}))
        return

    for i, p in enumerate(files):
        try:
            tensors, info = normalize_file(p, recipe)
        except Exception as e:  # a file the reference cannot decode or normalise is excluded, with the reason
            print(json.dumps({"index": i, "status": "excluded", "reason": f"{type(e).__name__}: {str(e)[:160]}"}))
            continue
        outs = []
        for k, t in enumerate(tensors):
            out = os.path.join(args.out, f"{i}_{k}.npy")
            write_npy(out, t)
            outs.append(out)
        print(json.dumps({"index": i, "status": "ok", "outputs": outs, "shape": list(tensors[0].shape),
                          "window": info}, default=float))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
