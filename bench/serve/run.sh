#!/usr/bin/env bash
# bench/serve/run.sh: requests/s and p50/p99 latency of the archive server (QIDO-RS study search, WADO-RS frame
# retrieval) beside Orthanc's REST API (Debian `orthanc`, no DICOMweb plugin: /tools/find and
# /instances/{id}/frames/0/raw) on the same archive in the same run: a workload of uncompressed CT/MR slices with
# fresh UIDs (bench/ingest/make_workload.py) goes through `dicom-etl run --serve`, and the de-identified objects it
# stored are uploaded into Orthanc (SQLite index), so both serve the same objects.
#   bench/serve/run.sh [files=600] [seconds=10] [clients=4]     (BENCH_CONFIGURATION=debug to skip the release build;
#                                                            BIN=path/to/dicom-etl to use a binary built elsewhere)
set -euo pipefail
cd "$(dirname "$0")/../.."
configuration=${BENCH_CONFIGURATION:-release}
command -v Orthanc >/dev/null || {
  [ "$(id -u)" = 0 ] || { echo "Debian package orthanc missing (install it as root)" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc >/dev/null
}
if [ -z "${BIN:-}" ]; then
  swift build -c "$configuration" --product dicom-etl >/dev/null
  BIN="$(swift build -c "$configuration" --show-bin-path)/dicom-etl"
fi
export BIN
echo "dicom-etl: $BIN"
./scripts/with-services.sh bench/serve/measure.sh "$@"
