#!/usr/bin/env bash
# Images/s of the pneumonia CNN: the Swift forward pass (OpenBLAS, one BLAS thread) beside TensorFlow
# (tf.function), LiteRT and ONNX Runtime on the same model, at batch 1 and 64 on 1 and 2 threads, plus
# GFLOP/s achieved beside a bare sgemm measured in the same run.
#   bench/inference/run.sh [model version folder] [seconds per figure]     (needs `make train-venv`)
set -euo pipefail
cd "$(dirname "$0")/../.."
MODEL=${1:-models/trained_models/pneumonia-cnn/1.0.0}
SECONDS_PER=${2:-2}
PY=${TRAIN_VENV:-.venv-train}/bin/python
export OPENBLAS_NUM_THREADS=1
swift build -c release --product inference-bench >/tmp/inference-bench-build.log 2>&1 || { cat /tmp/inference-bench-build.log >&2; exit 1; }
echo "== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== Swift forward pass (Sources/Inference)"
"$(swift build -c release --show-bin-path)/inference-bench" "$MODEL" "$SECONDS_PER"
for t in 1 2; do
  echo "== TensorFlow / LiteRT / ONNX Runtime, $t thread(s)"
  "$PY" bench/inference/frameworks.py "$MODEL" --threads "$t" --seconds "$SECONDS_PER" 2>/dev/null
done
echo "== load after: $(cut -d' ' -f1-3 /proc/loadavg)"
