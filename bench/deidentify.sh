#!/usr/bin/env bash
# bench/deidentify: files/s of `dicom-etl deidentify` (release build, etl/deidentify/basic.yaml) over the
# corpus, beside dicognito and pydicom/deid (PyPI, in .venv-bench) on the same files in the same run.
# dicom-etl runs basic.yaml with burned-in files written rather than rejected, so every tool writes the
# same files. Each tool reads, de-identifies and writes every file; figures are medians of RUNS runs, timed inside
# each tool (process start-up and imports excluded for all).
#   DICOM_ETL_CORPUS  folder of DICOM files (default ../shared/data/dicom)
#   DICOM_ETL_BIN     the dicom-etl binary (default .build/release/dicom-etl, built if missing)
#   RUNS              runs per tool (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${DICOM_ETL_CORPUS:-../shared/data/dicom}
BIN=${DICOM_ETL_BIN:-.build/release/dicom-etl}
RUNS=${RUNS:-3}
VENV=.venv-bench
[ -x "$BIN" ] || swift build -c release --product dicom-etl
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import dicognito, deid' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check dicognito==0.19.0 deid==0.4.13 pydicom==3.0.2
fi
work=$(mktemp -d /tmp/deid-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
# The same files for every tool: everything under the corpus but provenance notes and manifests. The
# deeply nested orthanc file is left out: it crashes pydicom (RecursionError) and DCMTK's own tools.
find "$CORPUS" -type f ! -name '_source*' ! -name '*.tsv' ! -name '*Deeply-Nested*' | sort >"$work/list.txt"
n=$(wc -l <"$work/list.txt")
head -c 48 /dev/urandom >"$work/key"
# basic.yaml, except that files with burned-in text are written too (the baselines write every file).
sed 's/^  reject: true/  reject: false/' etl/deidentify/basic.yaml >"$work/bench.yaml"
build=$(case "$BIN" in *release*) echo release;; *) echo "debug build";; esac)
echo "corpus: $n files, $(du -shL "$CORPUS" | cut -f1); $(nproc) cores; runs per tool: $RUNS"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

ours() {  # jobs → "ok seconds"
  local out
  out=$("$BIN" deidentify $(cat "$work/list.txt") --out "$work/ours" --profile "$work/bench.yaml" \
    --key-file "$work/key" --jobs "$1")
  rm -rf "$work/ours"
  echo "$out" | awk '/^deidentified/ {print $2, $7}'
}
report() {  # name ok failed rates...
  local name=$1 ok=$2 failed=$3; shift 3
  printf '%-44s %6s files/s   (%d written, %d failed or rejected)\n' "$name" "$(printf '%s\n' "$@" | median)" "$ok" "$failed"
}

for jobs in 1 2; do
  rates=(); ok=0
  for _ in $(seq "$RUNS"); do
    read -r ok s < <(ours "$jobs")
    rates+=("$(awk -v n="$ok" -v s="$s" 'BEGIN {printf "%.1f", n / s}')")
  done
  report "dicom-etl deidentify ($build, $jobs thread$([ "$jobs" = 1 ] || echo s))" "$ok" $((n - ok)) "${rates[@]}"
done
for tool in dicognito deid; do
  rates=(); ok=0; failed=0
  for _ in $(seq "$RUNS"); do
    read -r _ ok failed s < <("$VENV/bin/python" bench/deidentify_baselines.py "$tool" "$work/list.txt" "$work/$tool" 2>/dev/null)
    rm -rf "${work:?}/$tool"
    rates+=("$(awk -v n="$ok" -v s="$s" 'BEGIN {printf "%.1f", n / s}')")
  done
  label=$([ "$tool" = deid ] && echo "pydicom/deid 0.4.13 (default recipe, 1 process)" || echo "dicognito 0.19.0 (1 process)")
  report "$label" "$ok" "$failed" "${rates[@]}"
done
