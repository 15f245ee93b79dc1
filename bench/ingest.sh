#!/usr/bin/env bash
# bench/ingest: end-to-end files/s and MB/s of `dicom-etl run` (release build, filesystem store, a local
# PostgreSQL 15 with default durability) beside, in the same run on the same files: DCMTK's in-process
# decode-only rate (decode-bench, 2 threads), Orthanc's store-only ingest (Debian `orthanc`, SQLite index,
# keep-alive REST POST /instances from 4 clients) and a Python script doing the daemon's job the way a data
# team would (pydicom + dicognito + NumPy resize + psycopg, 2 processes; bench/ingest/python_pipeline.py).
#
# Workloads (bench/ingest/make_workload.py, written to a temp dir, fresh UIDs and patient IDs per copy):
#   plain       ~3,000 uncompressed single-frame CT/MR slices
#   compressed  ~300 CR/DX images plus JPEG / JPEG-LS / RLE images of any modality
#   10k         both of the above plus more plain slices, 10,000 files in all: the daemon alone, for its RSS
#               (daemon and sandbox children, /proc/PID/status) after 10,000 files
# The daemon is started on an empty drop folder; the clock runs from the first file copied in (cp) to the
# last file settled in the ledger (ingest.source_files.updated_at); the latency per file is that time minus
# the file's mtime (its close-write). Stage costs come from the daemon's /metrics after each run.
#
#   bench/ingest.sh        env: DICOM_ETL_CORPUS (default ../shared/data/dicom), PLAIN_FILES=3000,
#                          COMPRESSED_FILES=300, RSS_FILES=10000 (0 skips that run), RUNS=1 (median of runs),
#                          STABLE_SECONDS=0.5 (the daemon's stable_file_seconds), CONCURRENCY (the daemon's concurrency;
#                          default: its own default, one per core), DICOM_ETL_BIN, KEEP=1 keeps the temp dir
# Needs root or the postgres user for PostgreSQL; installs Debian `orthanc` when missing (root).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
CORPUS=${DICOM_ETL_CORPUS:-../shared/data/dicom}
PLAIN_FILES=${PLAIN_FILES:-3000}
COMPRESSED_FILES=${COMPRESSED_FILES:-300}
RSS_FILES=${RSS_FILES:-10000}
RUNS=${RUNS:-1}
STABLE_SECONDS=${STABLE_SECONDS:-0.5}
BIN=${DICOM_ETL_BIN:-.build/release/dicom-etl}
VENV=.venv-bench-ingest
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}

# --- what the bench needs -------------------------------------------------------------------------------
if ! command -v Orthanc >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "Debian package orthanc missing (install it as root)" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc >/dev/null
fi
if [ ! -f "$VENV/.installed" ] || [ bench/requirements-ingest.txt -nt "$VENV/.installed" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r bench/requirements-ingest.txt
  touch "$VENV/.installed"
fi
py="$VENV/bin/python"
[ -x "$BIN" ] || swift build -c release --product dicom-etl >/dev/null
swift build -c release --product decode-bench >/dev/null
decode_bench="$(swift build -c release --show-bin-path)/decode-bench"

work=$(mktemp -d /tmp/ingest-bench.XXXXXX)
chmod 755 "$work"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
daemon_pid=""; orthanc_pid=""
cleanup() {
  set +e
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
  [ -n "$orthanc_pid" ] && kill "$orthanc_pid" 2>/dev/null && wait "$orthanc_pid" 2>/dev/null
  as_pg "$PG_BIN/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- PostgreSQL: a throwaway cluster with the server's default settings (fsync on) -------------------------
mkdir -p "$work/pg" "$work/sock"
if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$work/pg" "$work/sock"; fi
as_pg "$PG_BIN/initdb" -D "$work/pg" -U postgres --auth=trust --no-sync -E UTF8 --locale=C >"$work/initdb.log" 2>&1 \
  || { cat "$work/initdb.log"; exit 1; }
pg_port=$(free_port)
as_pg "$PG_BIN/pg_ctl" -D "$work/pg" -w -l "$work/sock/pg.log" \
  -o "-k $work/sock -p $pg_port -c listen_addresses=127.0.0.1" start >/dev/null || { cat "$work/sock/pg.log"; exit 1; }
psql_() { "$PG_BIN/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -X -q -A -t "$@"; }
new_database() { psql_ -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"; }
url() { echo "postgres://postgres@127.0.0.1:$pg_port/$1?sslmode=disable"; }

# --- workloads --------------------------------------------------------------------------------------------
echo "generating workloads from $CORPUS ..."
read -r n_plain src_plain bytes_plain < <("$py" bench/ingest/make_workload.py "$CORPUS" plain "$PLAIN_FILES" "$work/in/plain")
read -r n_comp src_comp bytes_comp < <("$py" bench/ingest/make_workload.py "$CORPUS" compressed "$COMPRESSED_FILES" "$work/in/compressed")
extra=$(( RSS_FILES - n_plain - n_comp ))
if [ "$RSS_FILES" -gt 0 ] && [ "$extra" -gt 0 ]; then
  "$py" bench/ingest/make_workload.py "$CORPUS" plain "$extra" "$work/in/extra" >/dev/null
fi
find "$work/in/plain" -type f | sort >"$work/plain.list"
find "$work/in/compressed" -type f | sort >"$work/compressed.list"
head -c 48 /dev/urandom >"$work/key"
echo "plain: $n_plain files from $src_plain sources, $(( bytes_plain / n_plain / 1000 )) kB/file;" \
  "compressed: $n_comp files from $src_comp sources, $(( bytes_comp / n_comp / 1000 )) kB/file;" \
  "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A rate mbs okfail

# Sum of VmRSS / VmHWM (kB) of a process and its children.
memory_of() {  # pid field → kB
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$(( total + $(awk -v f="$2:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || echo 0) ))
  done
  echo "$total"
}

# dicom-etl run over the files of the given folders: fills rate/mbs/okfail[$label], writes $work/$label.*
run_daemon() {  # label folder...
  local label=$1; shift
  local db="bench_${label//[^a-z0-9]/_}" drop="$work/drop-$label" data="$work/data-$label" ops_port files bytes
  files=$(find "$@" -type f | wc -l)
  bytes=$(find "$@" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
  new_database "$db"
  rm -rf "$drop" "$data"; mkdir -p "$drop" "$data"
  ops_port=$(free_port)
  "$BIN" run --drop-folder "$drop" --data-dir "$data" --database-url "$(url "$db")" --key-file "$work/key" \
    --profile "$repo/etl/deidentify/basic.yaml" --routes-file "$repo/etl/routes.yaml" \
    --stable-file-seconds "$STABLE_SECONDS" --ops-port "$ops_port" --log-level warning ${CONCURRENCY:+--concurrency "$CONCURRENCY"} \
    >"$work/$label.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$ops_port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:$ops_port/readyz" >/dev/null || { echo "daemon not ready"; tail "$work/$label.log"; exit 1; }
  local start settled=0 last=0 still=0 peak=0 m
  start=$(date +%s.%N)
  for folder in "$@"; do find "$folder" -type f -print0 | xargs -0 cp -t "$drop"; done &
  local copier=$!
  while [ "$settled" -lt "$files" ]; do
    sleep 0.25
    settled=$(psql_ -d "$db" -c "SELECT count(*) FROM ingest.source_files WHERE state IN ('catalogued','quarantined','duplicate')")
    m=$(memory_of "$daemon_pid" VmRSS); [ "$m" -gt "$peak" ] && peak=$m
    if [ "$settled" = "$last" ]; then still=$((still + 1)); else still=0; last=$settled; fi
    [ "$still" -gt 240 ] && { echo "  $label: stalled at $settled of $files files"; break; }
  done
  wait "$copier"
  local end
  end=$(psql_ -d "$db" -c "SELECT extract(epoch FROM max(updated_at)) FROM ingest.source_files")
  curl -fs "http://127.0.0.1:$ops_port/metrics" >"$work/$label.metrics" || true
  {
    echo "daemon_rss_kb $(awk '$1 == "VmRSS:" {print $2}' "/proc/$daemon_pid/status")"
    echo "daemon_hwm_kb $(awk '$1 == "VmHWM:" {print $2}' "/proc/$daemon_pid/status")"
    echo "children_rss_kb $(( $(memory_of "$daemon_pid" VmRSS) - $(awk '$1 == "VmRSS:" {print $2}' "/proc/$daemon_pid/status") ))"
    echo "children_hwm_kb $(( $(memory_of "$daemon_pid" VmHWM) - $(awk '$1 == "VmHWM:" {print $2}' "/proc/$daemon_pid/status") ))"
    echo "children $(pgrep -P "$daemon_pid" | wc -l)"
    echo "sampled_peak_total_rss_kb $peak"
  } >"$work/$label.memory"
  kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=""
  psql_ -d "$db" -F' ' -c "SELECT state, count(*) FROM ingest.source_files GROUP BY 1 ORDER BY 1" >"$work/$label.states"
  psql_ -d "$db" -F' ' -c "SELECT round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - mtime))::numeric),
      round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - mtime))::numeric)
    FROM ingest.source_files WHERE state = 'catalogued'" >"$work/$label.latency"
  psql_ -d "$db" -F' ' -c "SELECT reason, count(*) FROM ingest.quarantine GROUP BY 1 ORDER BY 2 DESC" >"$work/$label.quarantine"
  local seconds catalogued
  seconds=$(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.3f", e - s}')
  catalogued=$(awk '$1 == "catalogued" {print $2}' "$work/$label.states")
  echo "$files $bytes $seconds ${catalogued:-0}" >>"$work/$label.runs"
  rm -rf "$drop" "$data"
}

# One line per run: FILES BYTES SECONDS OK → median files/s, MB/s
summarise() {  # key runs-file
  rate[$1]=$(awk '{printf "%.1f\n", $1 / $3}' "$2" | median)
  mbs[$1]=$(awk '{printf "%.1f\n", $2 / $3 / 1e6}' "$2" | median)
  okfail[$1]=$(tail -1 "$2" | awk '{print $4 "/" $1 - $4}')
}

run_orthanc() {  # label list
  local port dir=$work/orthanc-$1 ok failed seconds bytes files
  port=$(free_port); rm -rf "$dir"; mkdir -p "$dir/storage"
  cat >"$dir/orthanc.json" <<EOF
{ "Name": "bench", "StorageDirectory": "$dir/storage", "IndexDirectory": "$dir/storage", "HttpPort": $port,
  "DicomServerEnabled": false, "RemoteAccessAllowed": false, "AuthenticationEnabled": false, "Plugins": [] }
EOF
  Orthanc "$dir/orthanc.json" >"$dir/log" 2>&1 &
  orthanc_pid=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/system" >/dev/null 2>&1 && break; sleep 0.1; done
  read -r ok failed seconds < <("$py" bench/ingest/orthanc_upload.py "$2" "$port" 4)
  kill "$orthanc_pid"; wait "$orthanc_pid" 2>/dev/null || true; orthanc_pid=""
  files=$(wc -l <"$2"); bytes=$(xargs -a "$2" -d '\n' stat -c %s | awk '{s += $1} END {print s}')
  echo "$files $bytes $seconds $ok" >>"$work/orthanc-$1.runs"
  rm -rf "$dir"
}

run_python() {  # label list
  local db="py_$1" ok failed seconds files bytes
  new_database "$db"
  rm -rf "$work/py-out"
  read -r ok failed seconds < <("$py" bench/ingest/python_pipeline.py "$2" "$work/py-out" "$(url "$db")" 2)
  files=$(wc -l <"$2"); bytes=$(xargs -a "$2" -d '\n' stat -c %s | awk '{s += $1} END {print s}')
  echo "$files $bytes $seconds $ok" >>"$work/python-$1.runs"
  rm -rf "$work/py-out"
}

run_decode() {  # label list
  local json
  mapfile -t paths <"$2"
  json=$("$decode_bench" 2 "$([ "${#paths[@]}" -lt 1000 ] && echo 5 || echo 1)" "${paths[@]}")
  "$py" -c 'import json, sys; j = json.loads(sys.argv[1]); n = j["decoded"] + j["failed"]
print(j["filesPerSecond"], j["fileMBPerSecond"], j["decoded"], j["failed"], n)' "$json" >>"$work/decode-$1.runs"
}

for label in plain compressed; do
  for run in $(seq "$RUNS"); do
    echo "run $run/$RUNS, $label: dicom-etl ..."; run_daemon "$label" "$work/in/$label"
    echo "run $run/$RUNS, $label: DCMTK decode ..."; run_decode "$label" "$work/$label.list"
    echo "run $run/$RUNS, $label: Orthanc ..."; run_orthanc "$label" "$work/$label.list"
    echo "run $run/$RUNS, $label: Python ..."; run_python "$label" "$work/$label.list"
  done
  summarise "dicom-etl-$label" "$work/$label.runs"
  summarise "orthanc-$label" "$work/orthanc-$label.runs"
  summarise "python-$label" "$work/python-$label.runs"
  rate[decode-$label]=$(awk '{print $1}' "$work/decode-$label.runs" | median)
  mbs[decode-$label]=$(awk '{print $2}' "$work/decode-$label.runs" | median)
  okfail[decode-$label]=$(tail -1 "$work/decode-$label.runs" | awk '{print $3 "/" $4}')
done
if [ "$RSS_FILES" -gt 0 ]; then
  echo "dicom-etl over $RSS_FILES files (RSS) ..."
  folders=("$work/in/plain" "$work/in/compressed"); [ -d "$work/in/extra" ] && folders+=("$work/in/extra")
  run_daemon 10k "${folders[@]}"
  summarise dicom-etl-10k "$work/10k.runs"
fi

# --- the table --------------------------------------------------------------------------------------------
echo
echo "bench/ingest — $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), runs: $RUNS (medians), daemon stable_file_seconds=$STABLE_SECONDS, concurrency=${CONCURRENCY:-default}"
printf '%-12s %-48s %10s %8s %12s\n' workload contender files/s MB/s ok/failed
for label in plain compressed; do
  printf '%-12s %-48s %10s %8s %12s\n' "$label" "dicom-etl run (release, fs store, PostgreSQL)" "${rate[dicom-etl-$label]}" "${mbs[dicom-etl-$label]}" "${okfail[dicom-etl-$label]}"
  printf '%-12s %-48s %10s %8s %12s\n' "" "DCMTK decode only (decode-bench, 2 threads)" "${rate[decode-$label]}" "${mbs[decode-$label]}" "${okfail[decode-$label]}"
  printf '%-12s %-48s %10s %8s %12s\n' "" "Orthanc $(dpkg-query -W -f='${Version}' orthanc | cut -d+ -f1) store-only (REST, 4 clients)" "${rate[orthanc-$label]}" "${mbs[orthanc-$label]}" "${okfail[orthanc-$label]}"
  printf '%-12s %-48s %10s %8s %12s\n' "" "Python pydicom+dicognito+NumPy+psycopg (2 procs)" "${rate[python-$label]}" "${mbs[python-$label]}" "${okfail[python-$label]}"
  awk -v d="${rate[dicom-etl-$label]}" -v o="${rate[orthanc-$label]}" -v p="${rate[python-$label]}" -v c="${rate[decode-$label]}" \
    'BEGIN {printf "%-12s dicom-etl = %.2f× Orthanc (aim ≥ 2), %.2f× Python (aim ≥ 5), %.0f %% of decode-only\n", "", d / o, d / p, 100 * d / c}'
  read -r p50 p99 <"$work/$label.latency"
  echo "             dicom-etl close-write → catalogued: p50 ${p50} ms, p99 ${p99} ms (burst drop; includes the ${STABLE_SECONDS} s stable wait and queueing)"
  echo "             dicom-etl ledger: $(tr '\n' ' ' <"$work/$label.states"); quarantined by reason: $(tr '\n' ' ' <"$work/$label.quarantine")"
done
if [ "$RSS_FILES" -gt 0 ]; then
  read -r p50 p99 <"$work/10k.latency"
  printf '%-12s %-48s %10s %8s %12s\n' "10k mixed" "dicom-etl run" "${rate[dicom-etl-10k]}" "${mbs[dicom-etl-10k]}" "${okfail[dicom-etl-10k]}"
  echo "             close-write → catalogued: p50 ${p50} ms, p99 ${p99} ms"
  echo "             memory after $(awk '{print $1}' "$work/10k.runs" | tail -1) files: $(tr '\n' ' ' <"$work/10k.memory")"
fi
echo
echo "dicom-etl stage durations (mean ms, from /metrics):"
for label in plain compressed; do
  awk -v l="$label" '
    /^dicom_etl_stage_duration_seconds_sum/ { match($0, /stage="[^"]*"/); s = substr($0, RSTART + 7, RLENGTH - 8); sum[s] = $2 }
    /^dicom_etl_stage_duration_seconds_count/ { match($0, /stage="[^"]*"/); s = substr($0, RSTART + 7, RLENGTH - 8); n[s] = $2 }
    /^dicom_etl_file_latency_seconds_sum/ { fs = $2 } /^dicom_etl_file_latency_seconds_count/ { fn = $2 }
    END { printf "  %-11s", l; for (s in sum) if (n[s] > 0) printf " %s %.2f", s, 1000 * sum[s] / n[s];
          if (fn > 0) printf "  (found stable → disposed %.1f)", 1000 * fs / fn; print "" }' "$work/$label.metrics"
done
