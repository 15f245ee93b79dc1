#!/usr/bin/env python3
"""Independent pixel reference: decode DICOM files with pydicom (+ pylibjpeg, openjpeg).

Reads lines "INDEX<TAB>PATH<TAB>AS_RGB" on stdin (AS_RGB 1 asks for pydicom's YCbCr→RGB conversion,
0 for the stored values as they are). For each file that pydicom decodes it writes OUT/INDEX.bin
(int64 little endian, frames × rows × columns × samples, interleaved) with the bits outside
BitsStored/HighBit dropped and the sign extended, the same rule the DICOM layer applies, and prints
one JSON line {"index", "ok", "shape", "error"} per input line.

Usage: reference_pixels.py OUT_DIR < list
"""
import json
import sys
import warnings

import numpy as np
import pydicom
from pydicom.pixels import pixel_array

warnings.simplefilter("ignore")


def stored_values(ds, arr):
    bits_allocated = int(ds.BitsAllocated)
    if bits_allocated == 1:
        return arr.astype(np.int64)
    bits_stored = int(getattr(ds, "BitsStored", bits_allocated) or bits_allocated)
    high_bit = int(getattr(ds, "HighBit", bits_stored - 1))
    signed = int(getattr(ds, "PixelRepresentation", 0)) == 1
    width = {8: np.uint8, 16: np.uint16, 32: np.uint32}[bits_allocated if bits_allocated in (8, 16, 32) else 32]
    raw = arr.astype(width if arr.dtype.itemsize * 8 == bits_allocated else arr.dtype).view(
        {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[arr.dtype.itemsize]).astype(np.uint64)
    shift = max(0, high_bit + 1 - bits_stored)
    mask = (1 << bits_stored) - 1
    values = (raw >> np.uint64(shift)) & np.uint64(mask)
    out = values.astype(np.int64)
    if signed:
        sign = 1 << (bits_stored - 1)
        out = np.where(out & sign, out - (1 << bits_stored), out)
    return out


def main() -> None:
    out_dir = sys.argv[1]
    for line in sys.stdin:
        index, path, as_rgb = line.rstrip("\n").split("\t")
        result = {"index": int(index), "ok": False}
        try:
            ds = pydicom.dcmread(path, force=True)
            if "TransferSyntaxUID" not in ds.file_meta:
                # A dataset without file meta: pydicom found its encoding while reading it.
                from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
                ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if ds.original_encoding[0]
                                                  else ExplicitVRLittleEndian if ds.original_encoding[1]
                                                  else ExplicitVRBigEndian)
            arr = pixel_array(ds, as_rgb=as_rgb == "1") if as_rgb == "1" else pixel_array(ds, raw=True)
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
            rows, cols = int(ds.Rows), int(ds.Columns)
            values = stored_values(ds, arr).reshape(frames, rows, cols, spp)
            values.astype("<i8").tofile(f"{out_dir}/{index}.bin")
            result.update(ok=True, shape=list(values.shape))
        except Exception as error:  # the reference either decodes a file or says why not
            result["error"] = type(error).__name__
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
