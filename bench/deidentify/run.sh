#!/usr/bin/env bash
# bench/deidentify/run.sh: files/s of `dicom-etl deidentify` (release build, etl/deidentify/basic.yaml) over the
# corpus, beside dicognito and pydicom/deid (PyPI, in .venv-bench) on the same files in the same run.
# dicom-etl runs basic.yaml with burned-in files written rather than rejected, so every tool writes the
# same files. Each tool reads, de-identifies and writes every file; figures are medians of RUNS runs, timed inside
# each tool (process start-up and imports excluded for all).
#   DICOM_ETL_CORPUS  folder of DICOM files (default ../shared/data/dicom)
#   DICOM_ETL_BIN     the dicom-etl binary (default .build/release/dicom-etl, built if missing)
#   RUNS              runs per tool (default 3)
#   PARTS             "corpus ocr" (default), or either
# The ocr part: text burned into the pixels of generated secondary captures (scripts/burned_in_text.py: names,
# IDs, dates and free text over PneumoniaMNIST chest X-rays and corpus images, 8/12/16-bit, MONOCHROME1, RGB,
# 2 frames; plus images without text). images/s and recall, one process each, of dicom-etl's header-only path
# (burned-in text passed unchecked), of its OCR path (redact_sensitive and redact_all_text: Tesseract 5 through
# libtesseract, one engine loaded once) and of Presidio's DicomImageRedactorEngine (PyPI presidio-image-redactor,
# in .venv-bench-ocr from bench/deidentify/requirements-ocr.txt; Tesseract through pytesseract) on the same files in the
# same run. Recall: identifying planted strings whose visible ink lies under a solid fill (bench/deidentify/ocr.py).
#   OCR_IMAGES, OCR_NOTEXT  images with and without text (default 48 and 24); OCR_RUNS runs per tool (default 1)
set -euo pipefail
cd "$(dirname "$0")/../.."
CORPUS=${DICOM_ETL_CORPUS:-../shared/data/dicom}
BIN=${DICOM_ETL_BIN:-.build/release/dicom-etl}
RUNS=${RUNS:-3}
VENV=.venv-bench
PARTS=${PARTS:-corpus ocr}
[ -x "$BIN" ] || swift build -c release --product dicom-etl
if [[ " $PARTS " == *" corpus "* ]] && { [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import dicognito, deid' 2>/dev/null; }; then
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
chmod 600 "$work/key"  # a key file must be owner-only
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

if [[ " $PARTS " == *" corpus "* ]]; then
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
      read -r _ ok failed s < <("$VENV/bin/python" bench/deidentify/baselines.py "$tool" "$work/list.txt" "$work/$tool" 2>/dev/null)
      rm -rf "${work:?}/$tool"
      rates+=("$(awk -v n="$ok" -v s="$s" 'BEGIN {printf "%.1f", n / s}')")
    done
    label=$([ "$tool" = deid ] && echo "pydicom/deid 0.4.13 (default recipe, 1 process)" || echo "dicognito 0.19.0 (1 process)")
    report "$label" "$ok" "$failed" "${rates[@]}"
  done
fi

if [[ " $PARTS " == *" ocr "* ]]; then
  OCR_VENV=.venv-bench-ocr
  if [ ! -x "$OCR_VENV/bin/python" ] || ! "$OCR_VENV/bin/python" -c 'import presidio_image_redactor, pydicom, PIL' 2>/dev/null; then
    python3 -m venv "$OCR_VENV"
    "$OCR_VENV/bin/pip" install -q --disable-pip-version-check -r bench/deidentify/requirements-ocr.txt
  fi
  OCR_RUNS=${OCR_RUNS:-1}
  set_dir="$work/burned-in"
  medmnist=${DICOM_ETL_MEDMNIST:-../shared/data/medmnist}
  extra=()
  [ -f "$medmnist/MANIFEST.tsv" ] && extra+=(--medmnist "$medmnist")
  [ -d "$CORPUS" ] && extra+=(--corpus "$CORPUS")
  "$OCR_VENV/bin/python" scripts/burned_in_text.py --out "$set_dir" --count "${OCR_IMAGES:-48}" --no-text "${OCR_NOTEXT:-24}" "${extra[@]}" >"$work/set.txt"
  images=$(find "$set_dir" -name '*.dcm' | wc -l)
  echo
  echo "burned-in text: $(cat "$work/set.txt"); runs per tool: $OCR_RUNS"
  sed 's/^  policy: .*/  policy: redact_all_text/' etl/deidentify/basic.yaml >"$work/all-text.yaml"
  ocr_report() {  # name images/s(median) score-line
    local name=$1 rate=$2; shift 2
    read -r _ id_ok id_total all_ok all_total altered notext missing id_half <<<"$*"
    printf '%-58s %6s images/s   recall %5.1f %% identifying (%d/%d; half the ink or more: %d), %5.1f %% all text; %d/%d text-free altered; %d not written\n' \
      "$name" "$rate" "$(awk -v a="$id_ok" -v b="$id_total" 'BEGIN {print 100 * a / b}')" "$id_ok" "$id_total" "$id_half" \
      "$(awk -v a="$all_ok" -v b="$all_total" 'BEGIN {print 100 * a / b}')" "$altered" "$notext" "$missing"
  }
  for mode in header-only redact_sensitive redact_all_text; do
    case $mode in
      header-only) profile="$work/bench.yaml" ;;
      redact_sensitive) profile=etl/deidentify/basic.yaml ;;
      redact_all_text) profile="$work/all-text.yaml" ;;
    esac
    rates=()
    for _ in $(seq "$OCR_RUNS"); do
      rm -rf "$work/ours"
      out=$("$BIN" deidentify "$set_dir"/text/*.dcm "$set_dir"/no-text/*.dcm --out "$work/ours" --profile "$profile" --key-file "$work/key" --jobs 1)
      rates+=("$(echo "$out" | awk '/^deidentified/ {printf "%.2f", $4 / $7}')")
    done
    ocr_report "dicom-etl deidentify $mode ($build, 1 thread)" "$(printf '%s\n' "${rates[@]}" | median)" \
      "$("$OCR_VENV/bin/python" bench/deidentify/ocr.py score "$set_dir" "$work/ours")"
  done
  rm -rf "$work/ours"
  version=$("$OCR_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("presidio-image-redactor"))')
  for config in "" "--psm 11"; do
    args=()
    [ -n "$config" ] && args=("$config")
    rates=()
    for _ in $(seq "$OCR_RUNS"); do
      rm -rf "$work/presidio"
      read -r _ ok failed s < <("$OCR_VENV/bin/python" bench/deidentify/ocr.py presidio "$set_dir" "$work/presidio" "${args[@]}" 2>/dev/null)
      rates+=("$(awk -v n="$images" -v s="$s" 'BEGIN {printf "%.2f", n / s}')")
    done
    ocr_report "presidio-image-redactor $version (${config:-defaults}; $failed failed)" "$(printf '%s\n' "${rates[@]}" | median)" \
      "$("$OCR_VENV/bin/python" bench/deidentify/ocr.py score "$set_dir" "$work/presidio")"
  done
fi
