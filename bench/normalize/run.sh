#!/usr/bin/env bash
# bench/normalize/run.sh: tensors/s of `dicom-etl normalize` (release build) for cxr-28 on the corpus's
# radiographs and ct-hu-volume on a CT series, beside the Python reference (pydicom + NumPy,
# scripts/normalize_reference.py) on the same files in the same run. Both sides open, decode and
# normalise each file every iteration and write nothing. One process each, one thread each.
#   BENCH_SECONDS (default 10) per measurement; DICOM_ETL_CORPUS, DICOM_ETL_PYTHON as in scripts/test.sh;
#   DICOM_ETL_BIN to time an already built binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${BENCH_SECONDS:-10}
PY=${DICOM_ETL_PYTHON:-$PWD/.venv/bin/python}
CORPUS=${DICOM_ETL_CORPUS:-$(cd ../shared/data/dicom 2>/dev/null && pwd || true)}
[ -n "$CORPUS" ] || { echo "no corpus: set DICOM_ETL_CORPUS" >&2; exit 1; }
if [ -n "${DICOM_ETL_BIN:-}" ]; then
  BIN=$DICOM_ETL_BIN
else
  swift build -c release --product dicom-etl >/dev/null
  BIN="$(swift build -c release --show-bin-path)/dicom-etl"
fi
export OPENBLAS_NUM_THREADS=1

# Radiographs (CR/DX) of the manifest that both sides decode (no JPEG 2000), else every .dcm file.
mapfile -t CXR < <("$PY" - "$CORPUS" <<'PY'
import csv, os, sys
root = sys.argv[1]
manifest = os.path.join(root, "MANIFEST.tsv")
skip = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}
if os.path.exists(manifest):
    for row in csv.DictReader(open(manifest), delimiter="\t"):
        if row["modality"] in ("CR", "DX") and row["transfer_syntax_uid"] not in skip and row["rows"]:
            p = os.path.join(os.path.dirname(root), row["path"])
            if os.path.exists(p):
                print(p)
else:
    for name in ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm"):
        if os.path.exists(os.path.join(root, name)):
            print(os.path.join(root, name))
PY
)
# Keep the files the reference can normalise (the Swift side must then handle them all).
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
mapfile -t CXR < <(printf '%s\n' "${CXR[@]}" | "$PY" scripts/normalize_reference.py --recipe etl/normalize/cxr-28.yaml --out "$TMP" 2>/dev/null \
  | "$PY" -c 'import sys, json; files = sys.argv[1:]; [print(files[o["index"]]) for o in map(json.loads, sys.stdin) if o["status"] == "ok"]' "${CXR[@]}")
SERIES_DIR="$CORPUS/dicom-test-files/dcmqi/segmentations/ct-3slice"
[ -d "$SERIES_DIR" ] || SERIES_DIR="$CORPUS/dicomdirtests/98892001/CT5N"
[ -d "$SERIES_DIR" ] || SERIES_DIR="$CORPUS/pydicom/dicomdirtests/98892001/CT5N"
mapfile -t SERIES < <(find "$SERIES_DIR" -type f ! -name '_*' | sort)

echo "bench/normalize: $(nproc) cores, ${SECS}s per measurement, $(date -u +%FT%TZ), binary $BIN"
echo "cxr-28: ${#CXR[@]} radiographs; ct-hu-volume: ${#SERIES[@]} slices of one series"
run() {  # label, command...
  local label=$1; shift
  local json; json=$("$@" 2>/dev/null | tail -1)
  printf '  %-34s %s\n' "$label" "$json"
}
run "cxr-28 swift (dicom-etl)" "$BIN" normalize --recipe cxr-28 --out "$TMP" --bench-seconds "$SECS" "${CXR[@]}"
run "cxr-28 python reference" "$PY" scripts/normalize_reference.py --recipe etl/normalize/cxr-28.yaml --bench "$SECS" "${CXR[@]}"
run "ct-hu-volume swift (dicom-etl)" "$BIN" normalize --recipe ct-hu-volume --out "$TMP" --bench-seconds "$SECS" "${SERIES[@]}"
run "ct-hu-volume python reference" "$PY" scripts/normalize_reference.py --recipe etl/normalize/ct-hu-volume.yaml --series --bench "$SECS" "${SERIES[@]}"
