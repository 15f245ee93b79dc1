#!/usr/bin/env bash
# Builds and runs every test. Expects the services of scripts/with-services.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
export DICOM_ETL_PYTHON="$PWD/$VENV/bin/python"
if [ -d ../shared/data/dicom ]; then
  export DICOM_ETL_CORPUS="$(cd ../shared/data/dicom && pwd)"
  export DICOM_ETL_CORPUS_MANIFEST="$DICOM_ETL_CORPUS/MANIFEST.tsv"
  echo "corpus: ../shared/data/dicom (301 files, with manifest)"
else
  export DICOM_ETL_CORPUS="$("$DICOM_ETL_PYTHON" -c 'import os, pydicom; print(os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files"))')"
  echo "corpus: ../shared is absent; the corpus-wide tests run on pydicom's wheel test files at $DICOM_ETL_CORPUS"
fi
[ -d ../shared/data/medmnist ] && export DICOM_ETL_MEDMNIST="$(cd ../shared/data/medmnist && pwd)"
# TensorFlow for the training-loop end-to-end test (make train-venv); without it that test is skipped.
[ -x .venv-train/bin/python ] && export DICOM_ETL_TRAIN_PYTHON="$PWD/.venv-train/bin/python"
export OPENBLAS_NUM_THREADS=1
set +e
# Deployment: the manifests and the image's runtime libraries (scripts/check-deployment.sh).
deployment_status=0
scripts/check-deployment.sh || deployment_status=1
# `make run` as a new user meets it: a fresh copy of the run path under a 0700 parent, the release binary.
run_started=$(date +%s)
scripts/check-make-run.sh "$(swift build -c release --show-bin-path)/dicom-etl" || deployment_status=1
echo "make run check: $(( $(date +%s) - run_started )) s"
set -e
swift build --build-tests
set +e
# One test at a time: the corpus-wide tests hold the (2-core) cooperative thread pool for many seconds
# and would starve the timing-sensitive service tests if run beside them.
swift test --skip-build --no-parallel 2>&1 | tee .build/test.log
status=${PIPESTATUS[0]}
# A suite gated on what this script and with-services.sh provide (the test PostgreSQL, moto, the venv, DCMTK's
# tools, openssl) must fail here, not skip. Only what a machine may lack is allowed to skip: root for chown, and
# without ../shared the data sets it holds (PneumoniaMNIST, the standard's tables, corpus files pydicom lacks).
skipped=$(grep -a -E '(Test|Suite) .* skipped' .build/test.log | sed -E 's/^[^ ]+ //')
if [ -n "$skipped" ]; then
  echo "skipped tests:"; echo "$skipped" | sed 's/^/  /'
  if [ -d ../shared/data/dicom ]; then
    refused=$(echo "$skipped" | grep -v -E 'needs root' || true)
  else
    refused=$(echo "$skipped" | grep -E 'DATABASE_URL|moto|S3 server|DICOM_ETL_PYTHON|PostgreSQL|openssl|dicom-etl binary|skipped\.?$' || true)
  fi
  if [ -n "$refused" ]; then
    echo "these tests were skipped although make test provides what they need:"; echo "$refused" | sed 's/^/  /'
    status=1
  fi
fi
[ "$deployment_status" = 0 ] || echo "deployment or make-run checks failed (see above)"
[ "$status" = 0 ] && [ "$deployment_status" = 0 ]
