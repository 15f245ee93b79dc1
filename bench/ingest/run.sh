#!/usr/bin/env bash
# bench/ingest/run.sh: end-to-end files/s and MB/s of `dicom-etl run` (release build, filesystem store, a local
# PostgreSQL 15 with default durability) beside, in the same run on the same files: DCMTK's in-process
# decode-only rate (decode-bench, 2 threads), Orthanc's store-only ingest (Debian `orthanc`, SQLite index,
# keep-alive REST POST /instances from 4 clients) and a Python script doing the daemon's job the way a data
# team would (pydicom + dicognito + NumPy resize + psycopg, 2 processes; bench/ingest/python_pipeline.py).
# Each ratio is printed beside its goal.
#
# Workloads (bench/ingest/make_workload.py, written to a temp dir, fresh UIDs and patient IDs per copy):
#   plain       ~3,000 uncompressed single-frame CT/MR slices
#   compressed  ~300 CR/DX images plus JPEG / JPEG-LS / RLE images of any modality
#   backlog     100,000 uncompressed CT/MR slices (≤ 140 kB) already in the drop folder when the daemon starts:
#               start → first claim, files/s, and the daemon's RSS (with its sandbox helpers) sampled throughout
# The daemon is started on an empty drop folder (but for the backlog); the clock runs from the first file copied
# in (cp) to the last file settled in the ledger (ingest.source_files.updated_at); the latency per file is that
# time minus the file's mtime (its close-write). CPU per file: utime + stime (/proc) of the daemon, its sandbox
# helpers and every PostgreSQL process over the run, divided by the files. Idle latency: one file at a time
# renamed into an idle daemon's drop folder, until it is moved out (catalogued and disposed of).
#
# Network ingress (the plain files, sent to a daemon whose drop folder stays empty, and to Orthanc):
#   storescu    DCMTK storescu ×4 processes, each one association carrying a quarter of the files (+sd on a folder
#               of hard links; -R, calling AE STORESCU, TCP_NODELAY=1) → `dicom-etl run --dicom-port` (its Storage
#               SCP, STORESCU@127.0.0.1 allowed) vs → Orthanc's DICOM port (DicomCheckCalledAet false,
#               DicomAlwaysAllowStore, TCP_NODELAY=1 in its environment too)
#   STOW-RS     4 client processes (bench/ingest/http_upload.py, one keep-alive connection each), one file per
#               request (multipart/related; type="application/dicom", one part) → `dicom-etl run --serve` (an
#               uploader token) vs Orthanc's REST POST /instances, one file per request from the same client
# For dicom-etl the clock runs from the clients' start to the last file settled in the ledger, and to the last
# Success response any client got (acknowledged: durable in the network intake, not yet catalogued); for Orthanc
# to the last response. For storescu "the last response" is the last process's exit (after its A-RELEASE), for
# both servers; the HTTP clients time their last successful response.
#
#   bench/ingest/run.sh    env: DICOM_ETL_CORPUS (default ../shared/data/dicom), PLAIN_FILES=3000,
#                          COMPRESSED_FILES=300, BACKLOG_FILES=100000 (0 skips that run), RUNS=3 (median of runs),
#                          LATENCY_FILES=21, STABLE_SECONDS=0.5 (the daemon's stable_file_seconds), CONCURRENCY (the
#                          daemon's concurrency; default: its own default, one per core), DICOM_ETL_BIN,
#                          DECODE_BENCH_BIN (default: built), ONLY=plain,compressed,latency,backlog,network (a
#                          comma-separated subset of the sections; default all), KEEP=1 keeps the temp dir,
#                          BASELINE_BIN (another dicom-etl build, run right after DICOM_ETL_BIN in every run of
#                          plain and compressed, its ratio printed: builds compared in one run, as the machine's
#                          speed drifts from hour to hour), CONTENDERS=dicom-etl,decode,orthanc,python (a subset
#                          of the plain/compressed contenders; default all)
# Needs root or the postgres user for PostgreSQL; installs Debian `orthanc` when missing (root).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
CORPUS=${DICOM_ETL_CORPUS:-../shared/data/dicom}
PLAIN_FILES=${PLAIN_FILES:-3000}
COMPRESSED_FILES=${COMPRESSED_FILES:-300}
BACKLOG_FILES=${BACKLOG_FILES:-100000}
LATENCY_FILES=${LATENCY_FILES:-21}
RUNS=${RUNS:-3}
STABLE_SECONDS=${STABLE_SECONDS:-0.5}
BIN=${DICOM_ETL_BIN:-.build/release/dicom-etl}
BASELINE_BIN=${BASELINE_BIN:-}
CONTENDERS=${CONTENDERS:-dicom-etl,decode,orthanc,python}
contends() { [[ ",$CONTENDERS," == *",$1,"* ]]; }
VENV=.venv-bench-ingest
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}

# --- what the bench needs -------------------------------------------------------------------------------
if ! command -v Orthanc >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "Debian package orthanc missing (install it as root)" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends orthanc >/dev/null
fi
if [ ! -f "$VENV/.installed" ] || [ bench/ingest/requirements.txt -nt "$VENV/.installed" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r bench/ingest/requirements.txt
  touch "$VENV/.installed"
fi
py="$VENV/bin/python"
ONLY=${ONLY:-plain,compressed,latency,backlog,network}
want() { [[ ",$ONLY," == *",$1,"* ]]; }
[ -x "$BIN" ] || swift build -c release --product dicom-etl >/dev/null
decode_bench=${DECODE_BENCH_BIN:-}
if [ -z "$decode_bench" ] && contends decode && { want plain || want compressed; }; then
  swift build -c release --product decode-bench >/dev/null
  decode_bench="$(swift build -c release --show-bin-path)/decode-bench"
fi
if want network; then
  command -v storescu >/dev/null || { echo "DCMTK storescu missing (Debian dcmtk)" >&2; exit 1; }
fi

work=$(mktemp -d /tmp/ingest-bench.XXXXXX)
chmod 755 "$work"
source scripts/lib.sh
daemon_pid=""; orthanc_pid=""
cleanup() {
  set +e
  stop_process "$daemon_pid"
  stop_process "$orthanc_pid"
  stop_postgres "$PG_BIN" "$work"
  rm -rf "$work/set-aside"
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- PostgreSQL: a throwaway cluster with the server's default settings (fsync on) -------------------------
pg_port=$(free_port)
start_postgres "$PG_BIN" "$work" "$pg_port" || exit 1
psql_() { "$PG_BIN/psql" -h 127.0.0.1 -p "$pg_port" -U postgres -X -q -A -t "$@"; }
new_database() { psql_ -d postgres -c "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1"; }
url() { echo "postgres://postgres@127.0.0.1:$pg_port/$1?sslmode=disable"; }

# --- workloads --------------------------------------------------------------------------------------------
echo "generating workloads from $CORPUS ..."
read -r n_plain src_plain bytes_plain < <("$py" bench/ingest/make_workload.py "$CORPUS" plain "$PLAIN_FILES" "$work/in/plain")
n_comp=0 src_comp=0 bytes_comp=0
if want compressed; then
  read -r n_comp src_comp bytes_comp < <("$py" bench/ingest/make_workload.py "$CORPUS" compressed "$COMPRESSED_FILES" "$work/in/compressed")
fi
mkdir -p "$work/in/compressed"
if [ "$BACKLOG_FILES" -gt 0 ] && want backlog; then
  read -r n_back _ bytes_back < <("$py" bench/ingest/make_workload.py "$CORPUS" backlog "$BACKLOG_FILES" "$work/in/backlog")
  echo "backlog: $n_back files, $(( bytes_back / n_back / 1000 )) kB/file"
fi
find "$work/in/plain" -type f | sort >"$work/plain.list"
find "$work/in/compressed" -type f | sort >"$work/compressed.list"
head -c 48 /dev/urandom >"$work/key"; chmod 600 "$work/key"   # the daemon refuses a key others may read
echo "plain: $n_plain files from $src_plain sources, $(( bytes_plain / n_plain / 1000 )) kB/file;" \
  "compressed: $n_comp files from $src_comp sources, $(( bytes_comp / (n_comp > 0 ? n_comp : 1) / 1000 )) kB/file;" \
  "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
declare -A rate mbs okfail

# CPU ticks (utime + stime, with those of reaped children) of a process and its live children.
cpu_ticks() {  # pid → ticks
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$(( total + $(awk '{sub(/^.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0) ))
  done
  echo "$total"
}
postmaster_pid() { head -1 "$work/pg/postmaster.pid"; }

# Every contender starts from the same disk state: what the previous one wrote flushed, the kernel's caches dropped,
# then the inputs read back into the page cache. Without it each contender inherits the previous one's writes.
# Needs root (LEVEL_DISK=0, or not root: skipped).
level_disk() {  # list-file...
  [ "${LEVEL_DISK:-1}" = 1 ] && [ "$(id -u)" = 0 ] || return 0
  sync; echo 3 >/proc/sys/vm/drop_caches
  cat "$@" | xargs -d '\n' cat >/dev/null
}

# What a contender wrote is set aside, not deleted, until the bench ends. On an ext4 without a journal (this
# machine's root) a new inode is searched past every inode freed in the last minute (six while its table block is
# dirty: the kernel's `recently_deleted`), one look-up each, for every file created: a contender that follows
# another's clean-up of 6,000 files pays for it in each file it writes (perf: 10–15 % of the machine in
# `find_get_block_common` and `recently_deleted`), and caches dropped do not help, as creating files reads the
# inode table back. Each set-aside run keeps its files on disk (about 1.3 GB per dicom-etl run of the plain files).
set_aside() {  # path...
  local path
  mkdir -p "$work/set-aside"
  for path in "$@"; do [ -e "$path" ] && mv "$path" "$work/set-aside/$(date +%s%N)-$(basename "$path")"; done
  return 0
}

# Sum of VmRSS / VmHWM (kB) of a process and its children.
memory_of() {  # pid field → kB
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    total=$(( total + $(awk -v f="$2:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null || echo 0) ))
  done
  echo "$total"
}

# dicom-etl run on an empty drop folder, with extra flags: sets daemon_pid, d_db, d_drop, d_data, d_ops
daemon_start() {  # label flag...
  local label=$1; shift
  d_db="bench_${label//[^a-z0-9]/_}"; d_drop="$work/drop-$label"; d_data="$work/data-$label"
  new_database "$d_db"
  set_aside "$d_drop" "$d_data"; mkdir -p "$d_drop" "$d_data"
  d_ops=$(free_port)
  "${daemon_bin:-$BIN}" run --drop-folder "$d_drop" --data-dir "$d_data" --database-url "$(url "$d_db")" --key-file "$work/key" \
    --profile "$repo/etl/deidentify/basic.yaml" --routes-file "$repo/etl/routes.yaml" \
    --stable-file-seconds "$STABLE_SECONDS" --ops-port "$d_ops" --log-level warning ${CONCURRENCY:+--concurrency "$CONCURRENCY"} \
    "$@" >"$work/$label.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$d_ops/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:$d_ops/readyz" >/dev/null || { echo "daemon not ready"; tail "$work/$label.log"; exit 1; }
  d_cpu_daemon=$(cpu_ticks "$daemon_pid"); d_cpu_pg=$(cpu_ticks "$(postmaster_pid)")
}

# Waits until FILES files are settled in the ledger (or none settles for 60 s), records CPU, memory, metrics,
# states, latency, stops the daemon; sets d_end (epoch of the last file settled) and d_catalogued.
daemon_settle() {  # label files
  local label=$1 files=$2 settled=0 last=0 still=0 peak=0 m
  while [ "$settled" -lt "$files" ]; do
    sleep 0.25
    settled=$(psql_ -d "$d_db" -c "SELECT count(*) FROM ingest.source_files WHERE state IN ('catalogued','quarantined','duplicate')")
    m=$(memory_of "$daemon_pid" VmRSS); [ "$m" -gt "$peak" ] && peak=$m
    if [ "$settled" = "$last" ]; then still=$((still + 1)); else still=0; last=$settled; fi
    [ "$still" -gt 240 ] && { echo "  $label: stalled at $settled of $files files"; break; }
  done
  echo "$(( $(cpu_ticks "$daemon_pid") - d_cpu_daemon )) $(( $(cpu_ticks "$(postmaster_pid)") - d_cpu_pg )) $files $(getconf CLK_TCK)" >>"$work/$label.cpu"
  d_end=$(psql_ -d "$d_db" -c "SELECT extract(epoch FROM max(updated_at)) FROM ingest.source_files")
  curl -fs "http://127.0.0.1:$d_ops/metrics" >"$work/$label.metrics" || true
  {
    echo "daemon_rss_kb $(awk '$1 == "VmRSS:" {print $2}' "/proc/$daemon_pid/status")"
    echo "daemon_hwm_kb $(awk '$1 == "VmHWM:" {print $2}' "/proc/$daemon_pid/status")"
    echo "children_rss_kb $(( $(memory_of "$daemon_pid" VmRSS) - $(awk '$1 == "VmRSS:" {print $2}' "/proc/$daemon_pid/status") ))"
    echo "children_hwm_kb $(( $(memory_of "$daemon_pid" VmHWM) - $(awk '$1 == "VmHWM:" {print $2}' "/proc/$daemon_pid/status") ))"
    echo "children $(pgrep -P "$daemon_pid" | wc -l)"
    echo "sampled_peak_total_rss_kb $peak"
  } >"$work/$label.memory"
  kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=""
  psql_ -d "$d_db" -F' ' -c "SELECT state, count(*) FROM ingest.source_files GROUP BY 1 ORDER BY 1" >"$work/$label.states"
  psql_ -d "$d_db" -F' ' -c "SELECT round(1000 * percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - mtime))::numeric),
      round(1000 * percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - mtime))::numeric)
    FROM ingest.source_files WHERE state = 'catalogued'" >"$work/$label.latency"
  psql_ -d "$d_db" -F' ' -c "SELECT reason, count(*) FROM ingest.quarantine GROUP BY 1 ORDER BY 2 DESC" >"$work/$label.quarantine"
  d_catalogued=$(awk '$1 == "catalogued" {print $2}' "$work/$label.states")
  d_catalogued=${d_catalogued:-0}
  set_aside "$d_drop" "$d_data"
}

# dicom-etl run over the files of the given folders copied into its drop folder: appends to $work/$label.runs
run_daemon() {  # label folder...
  local label=$1; shift
  local files bytes start
  files=$(find "$@" -type f | wc -l)
  bytes=$(find "$@" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
  daemon_start "$label"
  find "$@" -type f >"$work/$label.inputs"; level_disk "$work/$label.inputs"
  start=$(date +%s.%N)
  for folder in "$@"; do find "$folder" -type f -print0 | xargs -0 cp -t "$d_drop"; done &
  local copier=$!
  daemon_settle "$label" "$files"
  wait "$copier"
  echo "$files $bytes $(awk -v s="$start" -v e="$d_end" 'BEGIN {printf "%.3f", e - s}') $d_catalogued" >>"$work/$label.runs"
}

# One line per run: FILES BYTES SECONDS OK → median files/s, MB/s
summarise() {  # key runs-file
  rate[$1]=$(awk '{printf "%.1f\n", $1 / $3}' "$2" | median)
  mbs[$1]=$(awk '{printf "%.1f\n", $2 / $3 / 1e6}' "$2" | median)
  okfail[$1]=$(tail -1 "$2" | awk '{print $4 "/" $1 - $4}')
}

# Orthanc on a fresh storage folder, REST on o_port and DICOM (AE ORTHANC, any calling AE may store) on o_dicom.
orthanc_start() {  # dir
  o_dir=$1; o_port=$(free_port); o_dicom=$(free_port)
  set_aside "$o_dir"; mkdir -p "$o_dir/storage"
  cat >"$o_dir/orthanc.json" <<EOF
{ "Name": "bench", "StorageDirectory": "$o_dir/storage", "IndexDirectory": "$o_dir/storage", "HttpPort": $o_port,
  "DicomServerEnabled": true, "DicomAet": "ORTHANC", "DicomPort": $o_dicom, "DicomCheckCalledAet": false,
  "DicomAlwaysAllowStore": true, "DicomCheckModalityHost": false, "DicomModalities": {},
  "RemoteAccessAllowed": false, "AuthenticationEnabled": false, "Plugins": [] }
EOF
  TCP_NODELAY=1 Orthanc "$o_dir/orthanc.json" >"$o_dir/log" 2>&1 &
  orthanc_pid=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$o_port/system" >/dev/null 2>&1 && break; sleep 0.1; done
}
orthanc_stop() {
  kill "$orthanc_pid"; wait "$orthanc_pid" 2>/dev/null || true; orthanc_pid=""
  set_aside "$o_dir"
}

run_orthanc() {  # label list
  local ok failed seconds bytes files
  orthanc_start "$work/orthanc-$1"
  level_disk "$2"
  read -r ok failed seconds < <("$py" bench/ingest/orthanc_upload.py "$2" "$o_port" 4)
  orthanc_stop
  files=$(wc -l <"$2"); bytes=$(xargs -a "$2" -d '\n' stat -c %s | awk '{s += $1} END {print s}')
  echo "$files $bytes $seconds $ok" >>"$work/orthanc-$1.runs"
}

run_python() {  # label list
  local db="py_$1" ok failed seconds files bytes
  new_database "$db"
  set_aside "$work/py-out"
  level_disk "$2"
  read -r ok failed seconds < <("$py" bench/ingest/python_pipeline.py "$2" "$work/py-out" "$(url "$db")" 2)
  files=$(wc -l <"$2"); bytes=$(xargs -a "$2" -d '\n' stat -c %s | awk '{s += $1} END {print s}')
  echo "$files $bytes $seconds $ok" >>"$work/python-$1.runs"
  set_aside "$work/py-out"
}

run_decode() {  # label list
  local json
  mapfile -t paths <"$2"
  level_disk "$2"
  json=$("$decode_bench" 2 "$([ "${#paths[@]}" -lt 1000 ] && echo 5 || echo 1)" "${paths[@]}")
  "$py" -c 'import json, sys; j = json.loads(sys.argv[1]); n = j["decoded"] + j["failed"]
print(j["filesPerSecond"], j["fileMBPerSecond"], j["decoded"], j["failed"], n)' "$json" >>"$work/decode-$1.runs"
}

# One file at a time renamed into an idle daemon's drop folder: rename → moved out (catalogued, disposed of).
run_latency() {
  local db=bench_latency drop="$work/drop-latency" data="$work/data-latency" ops_port
  new_database "$db"; rm -rf "$drop" "$data"; mkdir -p "$drop" "$data"
  ops_port=$(free_port)
  "${daemon_bin:-$BIN}" run --drop-folder "$drop" --data-dir "$data" --database-url "$(url "$db")" --key-file "$work/key" \
    --profile "$repo/etl/deidentify/basic.yaml" --routes-file "$repo/etl/routes.yaml" --ops-port "$ops_port" --log-level warning \
    >"$work/latency.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$ops_port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  sleep 1
  "$py" - "$drop" "$LATENCY_FILES" $(head -n "$LATENCY_FILES" "$work/plain.list") >"$work/latency.ms" <<'PY'
import os, shutil, sys, time
drop, count, sources = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for index, source in enumerate(sources[:count]):
    staging = os.path.join(drop, f".incoming-{index}")
    target = os.path.join(drop, f"latency-{index:03d}.dcm")
    shutil.copyfile(source, staging)
    time.sleep(0.3)                               # the daemon idle again
    start = time.monotonic()
    os.rename(staging, target)
    while os.path.exists(target):
        time.sleep(0.0005)
    print(f"{1000 * (time.monotonic() - start):.1f}")
PY
  kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=""
  psql_ -d "$db" -c "SELECT state, count(*) FROM ingest.source_files GROUP BY 1" | tr '\n' ' ' >"$work/latency.states"
  rm -rf "$drop" "$data"
}

# A backlog present when the daemon starts: start → first claim, files/s, RSS over the run.
run_backlog() {
  local db=bench_backlog drop="$work/in/backlog" data="$work/data-backlog" ops_port files started first settled=0 m
  files=$(find "$drop" -type f | wc -l)
  new_database "$db"; rm -rf "$data"; mkdir -p "$data"
  ops_port=$(free_port)
  started=$(date +%s.%N)
  "${daemon_bin:-$BIN}" run --drop-folder "$drop" --data-dir "$data" --database-url "$(url "$db")" --key-file "$work/key" \
    --profile "$repo/etl/deidentify/basic.yaml" --routes-file "$repo/etl/routes.yaml" --ops-port "$ops_port" --log-level warning \
    --processed-files delete >"$work/backlog.log" 2>&1 &
  daemon_pid=$!
  : >"$work/backlog.rss"
  while [ "$settled" -lt "$files" ]; do
    sleep 1
    m=$(memory_of "$daemon_pid" VmRSS)
    settled=$(psql_ -d "$db" -c "SELECT count(*) FROM ingest.source_files WHERE state IN ('catalogued','quarantined','duplicate')" 2>/dev/null || echo 0)
    echo "$settled $m $(awk '$1 == "VmRSS:" {print $2}' "/proc/$daemon_pid/status")" >>"$work/backlog.rss"
    kill -0 "$daemon_pid" 2>/dev/null || { echo "  backlog: the daemon stopped"; tail "$work/backlog.log"; break; }
  done
  first=$(psql_ -d "$db" -c "SELECT extract(epoch FROM min(created_at)) FROM ingest.source_files")
  local end
  end=$(psql_ -d "$db" -c "SELECT extract(epoch FROM max(updated_at)) FROM ingest.source_files")
  kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=""
  awk -v s="$started" -v f="$first" -v e="$end" -v n="$files" 'BEGIN {printf "%.1f %.1f %.1f\n", f - s, n / (e - f), e - s}' >"$work/backlog.result"
}

# --- network ingress: the plain files over DICOM (storescu) and HTTP (STOW-RS / Orthanc REST) -------------------
span() { awk -v s="$1" -v e="$2" 'BEGIN {printf "%.3f", e - s}'; }

# storescu ×4 in the background, each one association over the files of $work/lanes/N; scu_collect waits for them
# and sets s_ok (Success responses) and s_end (epoch of the last process's exit).
scu_launch() {  # port called-AE tag
  local lane
  scu_pids=()
  for lane in 0 1 2 3; do
    ( status=0
      TCP_NODELAY=1 storescu -v -R -aet STORESCU -aec "$2" +sd 127.0.0.1 "$1" "$work/lanes/$lane" >"$work/$3-scu-$lane.log" 2>&1 || status=$?
      echo "$status $(date +%s.%N)" >"$work/$3-scu-$lane.end" ) &
    scu_pids+=($!)
  done
}
scu_collect() {  # tag
  wait "${scu_pids[@]}"
  s_ok=$(cat "$work/$1"-scu-?.log | grep -c 'Received Store Response (Success)' || true)
  s_end=$(awk '{print $2}' "$work/$1"-scu-?.end | sort -g | tail -1)
  awk -v t="$1" '$1 != 0 {printf "  %s: a storescu exited with status %s\n", t, $1}' "$work/$1"-scu-?.end
}
scu_ready() {  # port called-AE
  for _ in $(seq 1 100); do echoscu -aet STORESCU -aec "$2" 127.0.0.1 "$1" >/dev/null 2>&1 && return; sleep 0.1; done
  echo "  no C-ECHO answer from $2 on port $1"
}

run_net_scu() {
  local port start
  port=$(free_port)
  daemon_start net-scu --dicom-port "$port" --dicom-host 127.0.0.1 --dicom-allowed-peers STORESCU@127.0.0.1
  scu_ready "$port" DICOM_ETL
  start=$(date +%s.%N)
  scu_launch "$port" DICOM_ETL net
  daemon_settle net-scu "$n_net"
  scu_collect net
  echo "$n_net $bytes_net $(span "$start" "$d_end") $d_catalogued" >>"$work/net-scu.runs"
  echo "$n_net $bytes_net $(span "$start" "$s_end") $s_ok" >>"$work/net-scu-ack.runs"
}

run_orthanc_scu() {
  local start
  orthanc_start "$work/orthanc-scu"
  scu_ready "$o_dicom" ORTHANC
  start=$(date +%s.%N)
  scu_launch "$o_dicom" ORTHANC orthanc
  scu_collect orthanc
  orthanc_stop
  echo "$n_net $bytes_net $(span "$start" "$s_end") $s_ok" >>"$work/orthanc-scu.runs"
}

run_net_stow() {
  local port client ok failed start ack
  port=$(free_port)
  daemon_start net-stow --serve --serve-host 127.0.0.1 --serve-port "$port" --serve-tokens-file "$work/tokens"
  for _ in $(seq 1 100); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/studies")" != 000 ] && break; sleep 0.1
  done
  "$py" bench/ingest/http_upload.py stow "$work/plain.list" "$port" 4 "$work/uploader.token" \
    >"$work/net-stow.client" 2>>"$work/net-stow.statuses" &
  client=$!
  daemon_settle net-stow "$n_net"
  wait "$client" || true
  read -r ok failed start ack <"$work/net-stow.client" || { echo "  STOW-RS client: $(tail -3 "$work/net-stow.statuses")"; ok=0 start=0 ack=0; }
  echo "$n_net $bytes_net $(span "$start" "$d_end") $d_catalogued" >>"$work/net-stow.runs"
  echo "$n_net $bytes_net $(span "$start" "$ack") $ok" >>"$work/net-stow-ack.runs"
}

run_orthanc_rest() {
  local ok failed start ack
  orthanc_start "$work/orthanc-rest"
  read -r ok failed start ack < <("$py" bench/ingest/http_upload.py orthanc "$work/plain.list" "$o_port" 4 2>>"$work/orthanc-rest.statuses")
  orthanc_stop
  echo "$n_net $bytes_net $(span "$start" "$ack") $ok" >>"$work/orthanc-rest.runs"
}

for label in plain compressed; do
  want "$label" || continue
  for run in $(seq "$RUNS"); do
    if contends dicom-etl; then echo "run $run/$RUNS, $label: dicom-etl ..."; run_daemon "$label" "$work/in/$label"; fi
    if [ -n "$BASELINE_BIN" ]; then
      echo "run $run/$RUNS, $label: dicom-etl baseline build ..."; daemon_bin=$BASELINE_BIN run_daemon "baseline-$label" "$work/in/$label"
    fi
    if contends decode; then echo "run $run/$RUNS, $label: DCMTK decode ..."; run_decode "$label" "$work/$label.list"; fi
    if contends orthanc; then echo "run $run/$RUNS, $label: Orthanc ..."; run_orthanc "$label" "$work/$label.list"; fi
    if contends python; then echo "run $run/$RUNS, $label: Python ..."; run_python "$label" "$work/$label.list"; fi
  done
  for key in "dicom-etl-$label:$label" "baseline-$label:baseline-$label" "orthanc-$label:orthanc-$label" "python-$label:python-$label"; do
    if [ -f "$work/${key#*:}.runs" ]; then summarise "${key%%:*}" "$work/${key#*:}.runs"; else rate[${key%%:*}]=0 mbs[${key%%:*}]=0 okfail[${key%%:*}]=-; fi
  done
  if [ -f "$work/decode-$label.runs" ]; then
    rate[decode-$label]=$(awk '{print $1}' "$work/decode-$label.runs" | median)
    mbs[decode-$label]=$(awk '{print $2}' "$work/decode-$label.runs" | median)
    okfail[decode-$label]=$(tail -1 "$work/decode-$label.runs" | awk '{print $3 "/" $4}')
  else rate[decode-$label]=0 mbs[decode-$label]=0 okfail[decode-$label]=-; fi
done
if want latency; then echo "idle latency: $LATENCY_FILES files one at a time ..."; run_latency; fi
if [ "$BACKLOG_FILES" -gt 0 ] && want backlog; then echo "backlog of $n_back files ..."; run_backlog; fi
if want network; then
  n_net=$(wc -l <"$work/plain.list"); bytes_net=$(xargs -a "$work/plain.list" -d '\n' stat -c %s | awk '{s += $1} END {print s}')
  "$py" - "$work/plain.list" "$work/lanes" <<'PY'
import os, sys
paths = [line for line in open(sys.argv[1]).read().split("\n") if line]
for lane in range(4):
    os.makedirs(os.path.join(sys.argv[2], str(lane)))
for index, path in enumerate(paths):
    os.link(path, os.path.join(sys.argv[2], str(index % 4), f"{index:06d}.dcm"))
PY
  "$BIN" token --role uploader --name bench-uploader --tokens-file "$work/tokens" >"$work/uploader.token"
  for run in $(seq "$RUNS"); do
    echo "run $run/$RUNS, network: storescu ×4 → dicom-etl ..."; run_net_scu
    echo "run $run/$RUNS, network: storescu ×4 → Orthanc ..."; run_orthanc_scu
    echo "run $run/$RUNS, network: STOW-RS ×4 → dicom-etl ..."; run_net_stow
    echo "run $run/$RUNS, network: REST ×4 → Orthanc ..."; run_orthanc_rest
  done
  for key in net-scu net-scu-ack orthanc-scu net-stow net-stow-ack orthanc-rest; do summarise "$key" "$work/$key.runs"; done
fi

# --- the table --------------------------------------------------------------------------------------------
echo
echo "bench/ingest — $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), runs: $RUNS (medians), daemon stable_file_seconds=$STABLE_SECONDS, concurrency=${CONCURRENCY:-default}"
printf '%-12s %-48s %10s %8s %12s\n' workload contender files/s MB/s ok/failed
for label in plain compressed; do
  want "$label" || continue
  printf '%-12s %-48s %10s %8s %12s\n' "$label" "dicom-etl run (release, fs store, PostgreSQL)" "${rate[dicom-etl-$label]}" "${mbs[dicom-etl-$label]}" "${okfail[dicom-etl-$label]}"
  if [ -n "$BASELINE_BIN" ]; then
    printf '%-12s %-48s %10s %8s %12s\n' "" "dicom-etl run, baseline build (BASELINE_BIN)" "${rate[baseline-$label]}" "${mbs[baseline-$label]}" "${okfail[baseline-$label]}"
    awk -v d="${rate[dicom-etl-$label]}" -v b="${rate[baseline-$label]}" 'BEGIN {if (b > 0) printf "%-12s dicom-etl = %.3f× the baseline build (medians, runs interleaved)\n", "", d / b}'
  fi
  printf '%-12s %-48s %10s %8s %12s\n' "" "DCMTK decode only (decode-bench, 2 threads)" "${rate[decode-$label]}" "${mbs[decode-$label]}" "${okfail[decode-$label]}"
  printf '%-12s %-48s %10s %8s %12s\n' "" "Orthanc $(dpkg-query -W -f='${Version}' orthanc | cut -d+ -f1) store-only (REST, 4 clients)" "${rate[orthanc-$label]}" "${mbs[orthanc-$label]}" "${okfail[orthanc-$label]}"
  printf '%-12s %-48s %10s %8s %12s\n' "" "Python pydicom+dicognito+NumPy+psycopg (2 procs)" "${rate[python-$label]}" "${mbs[python-$label]}" "${okfail[python-$label]}"
  awk -v d="${rate[dicom-etl-$label]}" -v o="${rate[orthanc-$label]}" -v p="${rate[python-$label]}" -v c="${rate[decode-$label]}" -v l="$label" \
    'BEGIN {
       if (o == 0 || p == 0 || c == 0) exit   # a contender left out (CONTENDERS)
       if (l == "plain") printf "%-12s dicom-etl = %.2f× Orthanc (aim ≥ 2, floor ≥ 1), %.2f× Python (aim ≥ 5), %.0f %% of decode-only\n", "", d / o, d / p, 100 * d / c
       else printf "%-12s dicom-etl = %.2f× Orthanc, %.2f× Python (aim ≥ 5), %.0f %% of decode-only (aim ≥ 70 %%)\n", "", d / o, d / p, 100 * d / c }'
  for cpu in "$label" "baseline-$label"; do
    [ -f "$work/$cpu.cpu" ] || continue
    awk '{printf "%.4f %.4f %.4f\n", 1000 * ($1 + $2) / $4 / $3, 1000 * $1 / $4 / $3, 1000 * $2 / $4 / $3}' "$work/$cpu.cpu" | sort -g |
      awk -v l="$label" -v who="${cpu%%-*}" '{t[NR] = $1; d[NR] = $2; g[NR] = $3} END { m = int((NR + 1) / 2);
        printf "%-12s %sCPU per file: daemon + sandbox %.2f ms, PostgreSQL %.2f ms, total %.2f ms%s (median run)\n", "",
        (who == "baseline" ? "baseline build: " : ""), d[m], g[m], t[m], (l == "plain" && who != "baseline" ? " (aim ≤ 3)" : "") }'
  done
  read -r p50 p99 <"$work/$label.latency"
  echo "             dicom-etl close-write → catalogued: p50 ${p50} ms, p99 ${p99} ms (burst drop; includes the ${STABLE_SECONDS} s stable wait and queueing)"
  echo "             dicom-etl ledger: $(tr '\n' ' ' <"$work/$label.states"); quarantined by reason: $(tr '\n' ' ' <"$work/$label.quarantine")"
done
if want latency; then
  sort -g "$work/latency.ms" | awk '{a[NR] = $1} END {printf "%-12s one file renamed into an idle drop folder → catalogued and moved out: p50 %.0f ms, p90 %.0f ms, max %.0f ms over %d files (aim p50 < 100)\n", "idle", a[int((NR + 1) / 2)], a[int(0.9 * NR + 0.5)], a[NR], NR}'
  echo "             ledger: $(cat "$work/latency.states")"
fi
if want network; then
  row() { printf '%-12s %-48s %10s %8s %12s\n' "$1" "$2" "${rate[$3]}" "${mbs[$3]}" "${okfail[$3]}"; }
  ratio() { awk -v d="${rate[$2]}" -v o="${rate[$3]}" -v l="$1" 'BEGIN {printf "%-12s %s = %.2f× Orthanc (aim ≥ 1× Orthanc)\n", "", l, d / o}'; }
  row network "storescu ×4 → dicom-etl SCP, settled in ledger" net-scu
  row "" "storescu ×4 → dicom-etl SCP, acknowledged" net-scu-ack
  row "" "storescu ×4 → Orthanc DICOM, acknowledged" orthanc-scu
  ratio "dicom-etl SCP settled" net-scu orthanc-scu; ratio "dicom-etl SCP acknowledged" net-scu-ack orthanc-scu
  row "" "STOW-RS ×4 → dicom-etl --serve, settled" net-stow
  row "" "STOW-RS ×4 → dicom-etl --serve, acknowledged" net-stow-ack
  row "" "Orthanc REST POST /instances ×4, acknowledged" orthanc-rest
  ratio "dicom-etl STOW settled" net-stow orthanc-rest; ratio "dicom-etl STOW acknowledged" net-stow-ack orthanc-rest
  for key in net-scu net-stow; do
    read -r p50 p99 <"$work/$key.latency"
    echo "             $key: durable in the intake → catalogued p50 ${p50} ms, p99 ${p99} ms; ledger: $(tr '\n' ' ' <"$work/$key.states");" \
      "quarantined by reason: $(tr '\n' ' ' <"$work/$key.quarantine")"
    echo "             $key /metrics (last run): $(grep -E '^dicom_etl_network_(instances|associations)_total' "$work/$key.metrics" | tr '\n' ' ')"
    awk '/^dicom_etl_network_durable_seconds_sum/ {s = $2} /^dicom_etl_network_durable_seconds_count/ {n = $2}
      END {if (n > 0) printf "             mean last byte → durable (fsync, ledger row, rename): %.1f ms per instance (last run)\n", 1000 * s / n}' "$work/$key.metrics"
    awk '{printf "%.4f %.4f %.4f\n", 1000 * ($1 + $2) / $4 / $3, 1000 * $1 / $4 / $3, 1000 * $2 / $4 / $3}' "$work/$key.cpu" | sort -g |
      awk '{t[NR] = $1; d[NR] = $2; g[NR] = $3} END { m = int((NR + 1) / 2);
        printf "             CPU per file: daemon + sandbox %.2f ms, PostgreSQL %.2f ms, total %.2f ms (median run)\n", d[m], g[m], t[m] }'
  done
  echo "             HTTP statuses (all runs): STOW-RS $(tr '\n' ' ' <"$work/net-stow.statuses"); Orthanc REST $(tr '\n' ' ' <"$work/orthanc-rest.statuses")"
fi
if [ -f "$work/backlog.result" ]; then
  read -r first_claim backlog_rate backlog_total <"$work/backlog.result"
  echo "backlog      $n_back files present at start: start → first claim ${first_claim} s (aim < 30), ${backlog_rate} files/s, all in ${backlog_total} s"
  # (mawk has no asort: each column sorted by sort(1))
  read -r rss_min rss_med rss_max < <(awk -v n="$n_back" '$1 > n / 10 {print $2}' "$work/backlog.rss" | sort -g |
    awk '{a[NR] = $1} END {if (NR > 0) print a[1], a[int((NR + 1) / 2)], a[NR]}')
  read -r own_min own_max < <(awk -v n="$n_back" '$1 > n / 10 {print $3}' "$work/backlog.rss" | sort -g |
    awk '{a[NR] = $1} END {if (NR > 0) print a[1], a[NR]}')
  [ -n "${rss_min:-}" ] && echo "             RSS after the first 10 % (daemon + sandbox helpers, kB): min $rss_min, median $rss_med, max $rss_max; daemon alone: min $own_min, max $own_max"
  awk -v n="$n_back" '$1 > 0 {q = int(4 * $1 / (n + 1)); if (!(q in s)) {s[q] = $2}} END {
      printf "             RSS at 0/25/50/75 %% of the files: %d %d %d %d kB\n", s[0], s[1], s[2], s[3] }' "$work/backlog.rss"
fi
echo
echo "dicom-etl stage durations (mean ms per batch, dispose per file; files per batch; from /metrics of the last run):"
for label in plain compressed net-scu net-stow; do
  case $label in net-*) want network ;; *) want "$label" ;; esac || continue
  awk -v l="$label" '
    /^dicom_etl_stage_duration_seconds_sum/ { match($0, /stage="[^"]*"/); s = substr($0, RSTART + 7, RLENGTH - 8); sum[s] = $2 }
    /^dicom_etl_stage_duration_seconds_count/ { match($0, /stage="[^"]*"/); s = substr($0, RSTART + 7, RLENGTH - 8); n[s] = $2 }
    /^dicom_etl_file_latency_seconds_sum/ { fs = $2 } /^dicom_etl_file_latency_seconds_count/ { fn = $2 }
    /^dicom_etl_batch_files_sum/ { bs = $2 } /^dicom_etl_batch_files_count/ { bn = $2 }
    END { printf "  %-11s", l; for (s in sum) if (n[s] > 0) printf " %s %.2f", s, 1000 * sum[s] / n[s];
          if (bn > 0) printf "  %.1f files per batch", bs / bn;
          if (fn > 0) printf "  (found stable → disposed %.1f)", 1000 * fs / fn; print "" }' "$work/$label.metrics"
done
