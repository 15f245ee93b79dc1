#!/usr/bin/env bash
# bench/decode/run.sh: files/s and MB/s decoding the corpus's images, in one run:
#   the DICOM layer in process (decode-bench: DCMTK + OpenJPEG) on 1 and 2 threads,
#   DCMTK's command-line decoders (dcmdjpeg / dcmdjpls / dcmdrle / dcmconv, one process per file),
#   pydicom (+ pylibjpeg, openjpeg) in one Python process.
# Usage: bench/decode/run.sh [CORPUS_DIR]   (default ../shared/data/dicom; builds the release binary)
set -euo pipefail
cd "$(dirname "$0")/../.."
corpus=${1:-../shared/data/dicom}
swift build -c release --product decode-bench >/dev/null
bin=.build/release/decode-bench
py=${DICOM_ETL_PYTHON:-.venv/bin/python}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

# The files both sides can decode: those dicom-etl decodes and pydicom decodes.
find "$corpus" -type f ! -name '*.tsv' ! -name '_source_*' | sort > "$work/all"
"$py" - "$work/all" > "$work/list" <<'PY'
import sys, warnings, pydicom
from pydicom.pixels import pixel_array
warnings.simplefilter("ignore")
for path in open(sys.argv[1]).read().split("\n"):
    if not path: continue
    try:
        ds = pydicom.dcmread(path, force=True)
        if "PixelData" not in ds: continue
        pixel_array(ds, raw=True)
        print(f"{path}\t{ds.file_meta.TransferSyntaxUID if 'TransferSyntaxUID' in getattr(ds, 'file_meta', {}) else ''}")
    except Exception:
        pass
PY
cut -f1 "$work/list" > "$work/paths"
mapfile -t paths < "$work/paths"
bytes=$(cat "${paths[@]}" | wc -c)
echo "files decodable by pydicom: ${#paths[@]} ($(( bytes / 1024 )) KiB on disk)"

echo "DICOM layer in process, 1 thread:  $("$bin" 1 5 "${paths[@]}")"
echo "DICOM layer in process, 2 threads: $("$bin" 2 5 "${paths[@]}")"

start=$(date +%s.%N); n=0
while IFS=$'\t' read -r path ts; do
  case "$ts" in
    1.2.840.10008.1.2.4.5*|1.2.840.10008.1.2.4.57|1.2.840.10008.1.2.4.70) tool=dcmdjpeg ;;
    1.2.840.10008.1.2.4.8*) tool=dcmdjpls ;;
    1.2.840.10008.1.2.5) tool=dcmdrle ;;
    1.2.840.10008.1.2.4.9*|1.2.840.10008.1.2.4.20*) continue ;;  # no DCMTK tool decodes JPEG 2000
    *) tool="dcmconv +te" ;;
  esac
  $tool "$path" "$work/out.dcm" >/dev/null 2>&1 && n=$((n + 1)) || true
done < "$work/list"
end=$(date +%s.%N)
python3 -c "import sys; n, s = int(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]); print(f'DCMTK command-line tools (one process per file): {n} files in {s:.2f} s = {n / s:.1f} files/s')" "$n" "$start" "$end"

"$py" - "$work/paths" <<'PY'
import sys, time, warnings, pydicom
from pydicom.pixels import pixel_array
warnings.simplefilter("ignore")
paths = open(sys.argv[1]).read().split()
start = time.perf_counter(); total = 0
for _ in range(5):
    for p in paths:
        total += pixel_array(pydicom.dcmread(p, force=True), raw=True).nbytes
s = time.perf_counter() - start
print(f"pydicom 1 process: {5*len(paths)/s:.1f} files/s, {total/1e6/s:.1f} decoded MB/s")
PY

# The same on the uncompressed files alone (no codec: what the container parsing and copying cost).
awk -F'\t' '$2=="1.2.840.10008.1.2" || $2=="1.2.840.10008.1.2.1"' "$work/list" | cut -f1 > "$work/plain"
mapfile -t plain < "$work/plain"
echo "uncompressed files: ${#plain[@]}"
echo "DICOM layer in process, uncompressed, 1 thread:  $("$bin" 1 20 "${plain[@]}")"
echo "DICOM layer in process, uncompressed, 2 threads: $("$bin" 2 20 "${plain[@]}")"
"$py" - "$work/plain" <<'PY'
import sys, time, warnings, pydicom
from pydicom.pixels import pixel_array
warnings.simplefilter("ignore")
paths = open(sys.argv[1]).read().split()
start = time.perf_counter(); n = 0
for _ in range(20):
    for p in paths:
        pixel_array(pydicom.dcmread(p, force=True), raw=True); n += 1
print(f"pydicom 1 process, uncompressed: {n / (time.perf_counter() - start):.1f} files/s")
PY
