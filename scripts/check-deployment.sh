#!/usr/bin/env bash
# The deployment checks: the manifests against their schemas and the code, and the container image's runtime
# packages against `ldd` of a release binary built the way deployment/Dockerfile builds it. Run by `make test`
# and by `make check-deployment`; exits non-zero when any check fails.
set -uo pipefail
cd "$(dirname "$0")/.."
python=${DICOM_ETL_PYTHON:-$PWD/.venv/bin/python}
status=0
"$python" deployment/tests/validate_manifests.py 2>&1 || status=1
started=$(date +%s)
swift build -c release --static-swift-stdlib --product dicom-etl || status=1
echo "release build of the image's binary (--static-swift-stdlib): $(( $(date +%s) - started )) s"
"$python" deployment/tests/check_runtime_libs.py "$(swift build -c release --show-bin-path)/dicom-etl" || status=1
exit $status
