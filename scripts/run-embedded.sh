#!/usr/bin/env bash
# What `make run` starts. The ingestion daemon is not wired to its stages yet, so this shows the DICOM
# layer on a real sample: its header as DICOM JSON and its pixel summary.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
sample=../shared/data/dicom/pydicom/CT_small.dcm
if [ ! -f "$sample" ]; then
  sample=$("$VENV/bin/python" -c 'import os, pydicom; print(os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files", "CT_small.dcm"))')
fi
exec .build/release/dicom-etl inspect "$sample"
