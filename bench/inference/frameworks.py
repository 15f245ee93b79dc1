#!/usr/bin/env python3
"""Images/s of the same CNN in TensorFlow (tf.function), LiteRT and ONNX Runtime on N threads.

    frameworks.py <model version folder> --threads N [--seconds S]

LiteRT runs a .tflite converted from the SavedModel; ONNX Runtime runs a graph built here from
weights.bin (the folded weights the Swift worker loads); both are checked against reference_outputs.npy.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))

import numpy as np  # noqa: E402

from pneumonia_cnn import weights_format as W  # noqa: E402


def rate(fn, batch: int, seconds: float) -> tuple[float, float]:
    """Images per wall second and per CPU second of the process (all threads)."""
    fn()
    fn()
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        fn()
        n += 1
    return n * batch / (time.perf_counter() - t0), n * batch / max(time.process_time() - c0, 1e-9)


def onnx_model(folder: Path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    header, payload = W.read(folder / "weights.bin")
    take = lambda t: payload[t["offset"]:t["offset"] + t["count"]].reshape(t["shape"])
    nodes, inits, x = [], [], "nchw"
    nodes.append(helper.make_node("Transpose", ["image"], [x], perm=[0, 3, 1, 2]))
    for i, s in enumerate(header["layers"]):
        y = f"t{i}"
        if s["type"] == "conv2d":
            w = np.ascontiguousarray(take(s["weights"]).transpose(3, 2, 0, 1))  # HWIO -> OIHW
            inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(take(s["bias"]), f"b{i}")]
            kh, kw = s["kernel"]
            nodes.append(helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [y], kernel_shape=[kh, kw],
                                          pads=[(kh - 1) // 2, (kw - 1) // 2, kh // 2, kw // 2]))
            if s["activation"] == "relu":
                nodes.append(helper.make_node("Relu", [y], [y + "r"]))
                y += "r"
        elif s["type"] in ("maxpool2d", "avgpool2d"):
            op = "MaxPool" if s["type"] == "maxpool2d" else "AveragePool"
            nodes.append(helper.make_node(op, [x], [y], kernel_shape=s["pool"], strides=s["pool"]))
        elif s["type"] == "global_average_pool":
            nodes.append(helper.make_node("GlobalAveragePool", [x], [y + "g"]))
            nodes.append(helper.make_node("Flatten", [y + "g"], [y]))
        elif s["type"] == "dense":
            inits += [numpy_helper.from_array(take(s["weights"]), f"w{i}"),
                      numpy_helper.from_array(take(s["bias"]), f"b{i}")]
            nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [y]))
            if s["activation"] == "sigmoid":
                nodes.append(helper.make_node("Sigmoid", [y], [y + "s"]))
                y += "s"
        x = y
    nodes.append(helper.make_node("Identity", [x], ["probability"]))
    graph = helper.make_graph(nodes, "pneumonia_cnn",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 28, 28, 1])],
                              [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["n", 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--seconds", type=float, default=2.0)
    a = p.parse_args()
    folder = Path(a.model)
    ref_in = np.load(folder / "reference_inputs.npy")
    ref_out = np.load(folder / "reference_outputs.npy")
    batches = {1: ref_in[:1].copy(), 64: np.ascontiguousarray(np.resize(ref_in, (64, 28, 28, 1)))}
    res = {}
    flops = json.loads((folder / "model_metadata.json").read_text())["architecture"]["flops_per_image"]

    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    loaded = tf.saved_model.load(str(folder / "saved_model"))
    serve = tf.function(lambda x: loaded.serve(x))
    err = float(np.abs(serve(tf.constant(ref_in)).numpy() - ref_out).max())
    for b, x in batches.items():
        t = tf.constant(x)
        res[("tf.function", b)] = rate(lambda: serve(t).numpy(), b, a.seconds)
    errs = {"tf.function": err}

    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder / "saved_model"))
    tflite = converter.convert()
    from ai_edge_litert.interpreter import Interpreter
    for b, x in batches.items():
        it = Interpreter(model_content=tflite, num_threads=a.threads)
        inp = it.get_input_details()[0]["index"]
        it.resize_tensor_input(inp, [b, 28, 28, 1])
        it.allocate_tensors()
        out = it.get_output_details()[0]["index"]

        def run(it=it, x=x, inp=inp, out=out):
            it.set_tensor(inp, x)
            it.invoke()
            return it.get_tensor(out)
        res[("LiteRT", b)] = rate(run, b, a.seconds)
        if b == 64:
            errs["LiteRT"] = float(np.abs(run() - np.resize(ref_out, (64, 1))).max())

    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(onnx_model(folder), so, providers=["CPUExecutionProvider"])
    errs["ONNX Runtime"] = float(np.abs(sess.run(None, {"image": ref_in})[0] - ref_out).max())
    for b, x in batches.items():
        res[("ONNX Runtime", b)] = rate(lambda: sess.run(None, {"image": x}), b, a.seconds)

    for (name, b), v in res.items():
        print(f"{name:13s} batch {b:2d}  threads {a.threads}: {v[0]:8.0f} images/s  {v[0] * flops / 1e9:6.1f} GFLOP/s  "
              f"({v[1]:6.0f} images/CPU-s)  max |Δp| vs reference {errs[name]:.1e}")


if __name__ == "__main__":
    main()
