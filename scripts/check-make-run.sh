#!/usr/bin/env bash
# What a new user meets with `make run`, checked by `make test`: the run path of the repository (the release
# binary, scripts/run-embedded.sh, config/, etl/, models/trained_models/) is copied into a fresh folder below a
# parent of mode 0700 (as a clone under /root), with no var/, and started the way `make run` starts it:
#   1. root, a root shell's default umask (022)
#   2. root, umask 077 already set
#   3. the second start of case 1 on the same var/: the same data is picked up
#   4. an unprivileged user (nobody) in a folder of its own, when this script runs as root
# Each run: chest radiographs dropped, diagnoses read from clinical.diagnoses through the embedded cluster's
# socket, SIGINT, exit 0, the cluster stopped.
#   scripts/check-make-run.sh BINARY      (env: DICOM_ETL_CORPUS_MANIFEST, DICOM_ETL_PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:?usage: check-make-run.sh path/to/release/dicom-etl}
python=${DICOM_ETL_PYTHON:-python3}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
work=$(mktemp -d /tmp/check-make-run.XXXXXX)
chmod 755 "$work"
pids=()
homes=()
cleanup() {
  set +e
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
  for home in "${homes[@]}"; do
    [ -f "$home/cluster/postmaster.pid" ] && runuser -u "$(stat -c %U "$home/cluster")" -- "$PG_BIN/pg_ctl" -D "$home/cluster" -m immediate stop >/dev/null 2>&1
    case "$home" in /var/lib/dicom-etl/postgres/*) rm -rf "$home" ;; esac
  done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "check-make-run: FAILED: $*" >&2; exit 1; }

# The files a user drops: the corpus's chest radiographs when the manifest is there, else pydicom's CR files
# rewritten as chest radiographs of one patient (fresh UIDs).
mkdir -p "$work/files"
if [ -n "${DICOM_ETL_CORPUS_MANIFEST:-}" ] && [ -f "$DICOM_ETL_CORPUS_MANIFEST" ]; then
  base=$(dirname "$(dirname "$DICOM_ETL_CORPUS_MANIFEST")")
  awk -F'\t' 'NR > 1 && ($7 == "CR" || $7 == "DX") {print $1}' "$DICOM_ETL_CORPUS_MANIFEST" | head -24 |
    while read -r f; do cp "$base/$f" "$work/files/$(echo "$f" | tr / _)"; done
  echo "check-make-run: dropping $(ls "$work/files" | wc -l) CR/DX files of the corpus"
else
  "$python" - "$work/files" <<'PY'
import os, sys, warnings, pydicom
warnings.simplefilter("ignore")
from pydicom.uid import generate_uid
src = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files")
study, series, n = generate_uid(), generate_uid(), 0
paths = sorted(os.path.join(folder, name) for folder, _, names in os.walk(src) for name in names)
for path in paths:
    try:
        ds = pydicom.dcmread(path)
    except Exception:
        continue
    if ds.get("Modality") not in ("CR", "DX") or "PixelData" not in ds:
        continue
    ds.BodyPartExamined = "CHEST"
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = "CHECK-RUN-1", study, series
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    n += 1
    ds.save_as(os.path.join(sys.argv[1], f"cr-{n}.dcm"), enforce_file_format=True)
print(f"check-make-run: dropping {n} of pydicom's CR files as chest radiographs (no ../shared here)")
PY
fi
expected=$(ls "$work/files" | wc -l)
[ "$expected" -gt 0 ] || fail "no files to drop"

# The run path of a fresh clone: what `make run` uses, nothing built or generated before.
make_copy() { # $1: folder
  mkdir -p "$1/.build/release" "$1/scripts" "$1/models"
  cp "$binary" "$1/.build/release/dicom-etl"
  cp scripts/run-embedded.sh "$1/scripts/"
  cp -r config etl "$1/"
  cp -r models/trained_models "$1/models/"
}

source scripts/lib.sh
psql_in() { # $1: repo folder, then psql arguments
  local repo=$1; shift
  "$PG_BIN/psql" -h "$repo/var/postgres/socket" -p 5432 -U postgres -d dicom_etl -X -q -A -t "$@"
}

# start_run NAME REPO USER UMASK: starts run-embedded.sh in its own process group, waits for /readyz.
start_run() {
  local name=$1 repo=$2 user=$3 mask=$4 port
  port=$(free_port)
  local args="--ops-port $port --stable-file-seconds 0.2 --series-quiet-seconds 1"
  if [ "$user" = root ]; then
    (cd "$repo" && umask "$mask" && exec setsid scripts/run-embedded.sh $args) >"$work/$name.log" 2>&1 </dev/null &
  else
    (cd "$repo" && exec setsid runuser -u "$user" -- bash -c "umask $mask; exec scripts/run-embedded.sh $args") >"$work/$name.log" 2>&1 </dev/null &
  fi
  run_pid=$!
  pids+=("$run_pid")
  local started=$(date +%s.%N)
  for _ in $(seq 1 600); do
    curl -fs "127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    kill -0 "$run_pid" 2>/dev/null || { tail -5 "$work/$name.log"; fail "$name: make run stopped before it was ready"; }
    sleep 0.1
  done
  curl -fs "127.0.0.1:$port/readyz" >/dev/null 2>&1 || fail "$name: not ready after 60 s"
  awk -v name="$name" -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "check-make-run: %s: ready after %.1f s\n", name, b - a }'
  local linked
  linked=$(readlink "$repo/var/postgres/cluster" || true)
  [ -n "$linked" ] && homes+=("$(dirname "$linked")")
  homes+=("$repo/var/postgres")
}

# stop_run NAME REPO: SIGINT to the process group, exit status 0, cluster stopped.
stop_run() {
  local name=$1 repo=$2 status=0
  kill -INT -- "-$run_pid"
  wait "$run_pid" || status=$?
  [ "$status" = 0 ] || { tail -5 "$work/$name.log"; fail "$name: exit status $status after SIGINT"; }
  [ ! -e "$repo/var/postgres/cluster/postmaster.pid" ] || fail "$name: the embedded cluster still runs after the daemon stopped"
  echo "check-make-run: $name: SIGINT, exit 0, cluster stopped"
}

# drop_and_read NAME REPO: drops the files, waits until each is disposed of and diagnoses stop changing.
drop_and_read() {
  local name=$1 repo=$2 owner=$3
  for f in "$work"/files/*; do
    cp "$f" "$repo/drop/.incoming"
    [ "$owner" = root ] || chown "$owner" "$repo/drop/.incoming"
    mv "$repo/drop/.incoming" "$repo/drop/$(basename "$f")"
  done
  local left diagnoses last=-1 steady=0
  for _ in $(seq 1 900); do
    left=$(find "$repo/drop" -maxdepth 1 -type f | wc -l)
    diagnoses=$(psql_in "$repo" -c "SELECT count(*) FROM clinical.diagnoses" 2>/dev/null || echo 0)
    if [ "$left" = 0 ] && [ "$diagnoses" -gt 0 ] && [ "$diagnoses" = "$last" ]; then
      steady=$((steady + 1)); [ "$steady" -ge 20 ] && break
    else
      steady=0
    fi
    last=$diagnoses
    sleep 0.2
  done
  [ "$left" = 0 ] || fail "$name: $left files left in the drop folder"
  [ "$diagnoses" -gt 0 ] || fail "$name: no diagnosis in clinical.diagnoses"
  local processed quarantined
  processed=$(find "$repo/drop/processed" -type f | wc -l)
  quarantined=$(find "$repo/drop/quarantine" -type f ! -name '*.reason.json' | wc -l)
  [ $((processed + quarantined)) = "$expected" ] || fail "$name: $processed processed + $quarantined quarantined != $expected dropped"
  echo "check-make-run: $name: $expected files dropped, $processed processed, $quarantined quarantined, $diagnoses diagnoses in clinical.diagnoses"
  result_diagnoses=$diagnoses
}

# 1 and 3: root, default umask, then a second start on the same var/.
parent="$work/root-home"; mkdir -m 700 "$parent"; repo="$parent/dicom-etl"; make_copy "$repo"
start_run umask-022 "$repo" root 022
drop_and_read umask-022 "$repo" root
first=$result_diagnoses
(cd "$repo" && .build/release/dicom-etl status --drop-folder ./drop --data-dir ./var >"$work/status.txt" 2>&1) || { cat "$work/status.txt"; fail "status failed"; }
grep -q "catalogued" "$work/status.txt" || { cat "$work/status.txt"; fail "status shows nothing catalogued"; }
[ -n "$(readlink "$repo/var/postgres/cluster" || true)" ] && echo "check-make-run: umask-022: cluster kept in $(dirname "$(readlink "$repo/var/postgres/cluster")") (the 0700 parent keeps the postgres user out of var/)"
stop_run umask-022 "$repo"
start_run restart "$repo" root 022
again=$(psql_in "$repo" -c "SELECT count(*) FROM clinical.diagnoses")
[ "$again" = "$first" ] || fail "restart: $again diagnoses after the restart, $first before"
grep -q "initialising the embedded PostgreSQL cluster" "$work/restart.log" && fail "restart: the cluster was initialised again"
echo "check-make-run: restart: the same cluster picked up ($again diagnoses)"
stop_run restart "$repo"

# 2: root with umask 077 already set.
parent2="$work/root-home-077"; mkdir -m 700 "$parent2"; repo2="$parent2/dicom-etl"; make_copy "$repo2"
start_run umask-077 "$repo2" root 077
drop_and_read umask-077 "$repo2" root
stop_run umask-077 "$repo2"

# 4: an unprivileged user in a folder of its own.
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
  parent3="$work/nobody-home"; mkdir -m 700 "$parent3"; repo3="$parent3/dicom-etl"; make_copy "$repo3"
  chown -R nobody "$parent3"
  start_run nobody "$repo3" nobody 022
  drop_and_read nobody "$repo3" nobody
  stop_run nobody "$repo3"
else
  echo "check-make-run: not root: the unprivileged case is this run itself"
fi
if grep -l "run() hasn't been called" "$work"/*.log "$work/status.txt"; then fail "PostgresNIO warned of a lease before run()"; fi
echo "check-make-run: ok"
