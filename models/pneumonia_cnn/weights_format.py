"""The weights file the Swift worker loads (`weights.bin`), with batch norm folded into the convolutions.

Layout, all integers and floats little-endian:

    offset 0   8 bytes   magic  b"DETLCNN\\0"
    offset 8   uint32    format version (1)
    offset 12  uint32    H = length in bytes of the JSON header
    offset 16  H bytes   JSON header (UTF-8), then zero bytes up to a multiple of 16
    then       float32 × header["payload_floats"]: the payload

The header lists the layers in order; a tensor is {"offset": o, "count": n} in floats from the payload
start. `payload_crc32` (zlib CRC-32 of the payload bytes) detects corruption; the file must end exactly
at the payload's end. Layer types:

    conv2d      kernel [kh, kw], stride 1, padding "same" (kh//2 on each side), in, out,
                weights HWIO = row-major (kh·kw·in, out), bias (out), activation "relu" | "linear"
    maxpool2d   pool [ph, pw], stride = pool, padding "valid" (floors)
    avgpool2d   same as maxpool2d, averaging
    global_average_pool
    dense       in, out, weights row-major (in, out), bias (out), activation "sigmoid" | "softmax" | "linear"

Folding: s = γ / √(σ² + ε); W'[..., o] = W[..., o] · s[o]; b'[o] = β[o] − μ[o] · s[o].
"""
from __future__ import annotations

import json
import struct
import zlib

import numpy as np

MAGIC = b"DETLCNN\0"
VERSION = 1


def fold(model) -> tuple[list[dict], list[np.ndarray]]:
    """Walks a Keras model of Conv2D/BatchNorm/ReLU/pooling/GAP/Dropout/Dense layers into folded layers."""
    from keras import layers as L

    specs: list[dict] = []
    arrays: list[np.ndarray] = []
    pending = None  # [spec, W, b] of the last conv, still open to BN/ReLU
    for layer in model.layers:
        if isinstance(layer, L.InputLayer) or isinstance(layer, L.Dropout):
            continue
        if isinstance(layer, L.Conv2D):
            if layer.strides != (1, 1) or layer.padding != "same" or layer.dilation_rate != (1, 1):
                raise ValueError(f"{layer.name}: only stride-1 'same' convolutions are supported")
            w = layer.get_weights()
            kernel = w[0].astype(np.float64)
            bias = w[1].astype(np.float64) if layer.use_bias else np.zeros(kernel.shape[-1])
            act = layer.activation.__name__
            spec = {"type": "conv2d", "name": layer.name, "kernel": list(kernel.shape[:2]),
                    "in": int(kernel.shape[2]), "out": int(kernel.shape[3]), "padding": "same", "stride": 1,
                    "activation": "relu" if act == "relu" else "linear"}
            if act not in ("linear", "relu"):
                raise ValueError(f"{layer.name}: activation {act}")
            pending = [spec, kernel, bias]
            specs.append(spec)
            continue
        if isinstance(layer, L.BatchNormalization):
            if pending is None or pending[0]["activation"] != "linear":
                raise ValueError(f"{layer.name}: batch norm must follow a linear convolution")
            gamma, beta, mean, var = (a.astype(np.float64) for a in layer.get_weights())
            s = gamma / np.sqrt(var + layer.epsilon)
            pending[1] = pending[1] * s
            pending[2] = beta + (pending[2] - mean) * s
            continue
        if isinstance(layer, L.ReLU):
            if pending is None or pending[0]["activation"] != "linear":
                raise ValueError(f"{layer.name}: ReLU must follow a convolution")
            pending[0]["activation"] = "relu"
            continue
        # any other layer closes the open convolution
        if pending is not None:
            arrays += [pending[1].astype(np.float32), pending[2].astype(np.float32)]
            pending = None
        if isinstance(layer, (L.MaxPooling2D, L.AveragePooling2D)):
            if layer.strides != layer.pool_size or layer.padding != "valid":
                raise ValueError(f"{layer.name}: only non-overlapping 'valid' pooling is supported")
            kind = "maxpool2d" if isinstance(layer, L.MaxPooling2D) else "avgpool2d"
            specs.append({"type": kind, "name": layer.name, "pool": list(layer.pool_size)})
        elif isinstance(layer, L.GlobalAveragePooling2D):
            specs.append({"type": "global_average_pool", "name": layer.name})
        elif isinstance(layer, L.Dense):
            w, b = layer.get_weights()
            specs.append({"type": "dense", "name": layer.name, "in": int(w.shape[0]), "out": int(w.shape[1]),
                          "activation": layer.activation.__name__})
            arrays += [w.astype(np.float32), b.astype(np.float32)]
        else:
            raise ValueError(f"{layer.name}: layer type {type(layer).__name__} is not supported")
    if pending is not None:
        arrays += [pending[1].astype(np.float32), pending[2].astype(np.float32)]
    return specs, arrays


def write(path, specs: list[dict], arrays: list[np.ndarray], input_shape: list[int]) -> dict:
    offset = 0
    it = iter(arrays)
    for spec in specs:
        if spec["type"] in ("conv2d", "dense"):
            for key in ("weights", "bias"):
                a = next(it)
                spec[key] = {"offset": offset, "count": int(a.size), "shape": list(a.shape)}
                offset += a.size
    payload = b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in arrays)
    header = {"format": "dicom-etl-cnn", "input_shape": input_shape, "layers": specs,
              "payload_floats": offset, "payload_crc32": zlib.crc32(payload)}
    hb = json.dumps(header, separators=(",", ":")).encode()
    pad = (-(16 + len(hb))) % 16
    with open(path, "wb") as f:
        f.write(MAGIC + struct.pack("<II", VERSION, len(hb)) + hb + b"\0" * pad + payload)
    return header


def read(path) -> tuple[dict, np.ndarray]:
    data = open(path, "rb").read()
    if data[:8] != MAGIC:
        raise ValueError("bad magic")
    version, h = struct.unpack("<II", data[8:16])
    header = json.loads(data[16:16 + h])
    start = 16 + h + (-(16 + h)) % 16
    payload = np.frombuffer(data[start:], dtype="<f4")
    if payload.size != header["payload_floats"] or zlib.crc32(data[start:]) != header["payload_crc32"]:
        raise ValueError("payload size or checksum mismatch")
    return header, payload


def forward(header: dict, payload: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A NumPy forward pass over the file's contents (NHWC), used to check an export before shipping it."""
    x = x.astype(np.float32)
    take = lambda t: payload[t["offset"]:t["offset"] + t["count"]].reshape(t["shape"])
    for s in header["layers"]:
        if s["type"] == "conv2d":
            w, b = take(s["weights"]), take(s["bias"])
            kh, kw = s["kernel"]
            n, hh, ww, c = x.shape
            xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
            cols = np.stack([xp[:, i:i + hh, j:j + ww, :] for i in range(kh) for j in range(kw)], axis=3)
            x = cols.reshape(n, hh, ww, kh * kw * c) @ w.reshape(kh * kw * c, -1) + b
            if s["activation"] == "relu":
                x = np.maximum(x, 0)
        elif s["type"] in ("maxpool2d", "avgpool2d"):
            ph, pw = s["pool"]
            n, hh, ww, c = x.shape
            x = x[:, :hh // ph * ph, :ww // pw * pw, :].reshape(n, hh // ph, ph, ww // pw, pw, c)
            x = x.max(axis=(2, 4)) if s["type"] == "maxpool2d" else x.mean(axis=(2, 4))
        elif s["type"] == "global_average_pool":
            x = x.mean(axis=(1, 2))
        elif s["type"] == "dense":
            x = x @ take(s["weights"]) + take(s["bias"])
            if s["activation"] == "sigmoid":
                x = 1 / (1 + np.exp(-x))
            elif s["activation"] == "softmax":
                e = np.exp(x - x.max(axis=1, keepdims=True))
                x = e / e.sum(axis=1, keepdims=True)
    return x
