#!/usr/bin/env bash
# bench/serve/measure.sh: the body of bench/serve/run.sh, inside scripts/with-services.sh (DICOM_ETL_TEST_DATABASE_URL).
set -euo pipefail
cd "$(dirname "$0")/../.."
files=${1:-600}; seconds=${2:-10}; clients=${3:-4}
bin=${BIN:?}
py=${DICOM_ETL_PYTHON:-.venv/bin/python}
corpus=${CORPUS:-../shared/data/dicom}
work=$(mktemp -d /tmp/serve-bench.XXXXXX)
source scripts/lib.sh
daemon_pid=""; orthanc_pid=""
cleanup() {
  set +e
  stop_process "$daemon_pid"
  stop_process "$orthanc_pid"
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
psql_() { "$DICOM_ETL_TEST_PG_BIN/psql" "$1" -X -q -A -t -c "$2"; }
db_url=${DICOM_ETL_TEST_DATABASE_URL/\/postgres\?//serve_bench?}
psql_ "$DICOM_ETL_TEST_DATABASE_URL" "CREATE DATABASE serve_bench"

# --- the same archive in both servers: the workload through dicom-etl, its de-identified objects into Orthanc ----
read -r n sources bytes < <("$py" bench/ingest/make_workload.py "$corpus" plain "$files" "$work/in")
mkdir -p "$work/drop" "$work/var"
head -c 48 /dev/urandom >"$work/key"
chmod 600 "$work/key"  # a key file must be owner-only
"$bin" token --role analyst --name bench --tokens-file "$work/tokens" >"$work/analyst.token"
port=$(free_port)
"$bin" run --serve --serve-port "$port" --serve-tokens-file "$work/tokens" --drop-folder "$work/drop" --data-dir "$work/var" \
  --database-url "$db_url" --key-file "$work/key" --profile etl/deidentify/basic.yaml --routes-file etl/routes.yaml \
  --stable-file-seconds 0.2 --ops-port 0 --log-level warning >"$work/daemon.log" 2>&1 &
daemon_pid=$!
cp -r "$work/in/." "$work/drop/"
for _ in $(seq 1 1800); do
  left=$(find "$work/drop" -type f -not -path "*/processed/*" -not -path "*/quarantine/*" | wc -l)
  [ "$left" = 0 ] && break; sleep 0.2
done
instances=$(psql_ "$db_url" "SELECT count(*) FROM imaging.instances")
studies=$(psql_ "$db_url" "SELECT count(*) FROM imaging.studies")
find "$work/var/objects/data/dicom" -name '*.dcm' | sort >"$work/objects.list"
orthanc_port=$(free_port)
mkdir -p "$work/orthanc"
cat >"$work/orthanc.json" <<JSON
{"Name": "bench", "HttpPort": $orthanc_port, "DicomServerEnabled": false, "StorageDirectory": "$work/orthanc",
 "IndexDirectory": "$work/orthanc", "RemoteAccessAllowed": false, "AuthenticationEnabled": false, "KeepAlive": true,
 "HttpCompressionEnabled": false, "StorageCompression": false, "HttpThreadsCount": 50, "Plugins": []}
JSON
Orthanc "$work/orthanc.json" >"$work/orthanc.log" 2>&1 &
orthanc_pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$orthanc_port/system" >/dev/null 2>&1 && break; sleep 0.1; done
read -r uploaded failed _ < <("$py" bench/ingest/orthanc_upload.py "$work/objects.list" "$orthanc_port" 4)
echo "archive: $instances instances in $studies studies from $n workload files ($sources corpus sources); Orthanc took $uploaded ($failed failed);" \
  "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); $clients client processes, $seconds s per scenario"

# --- scenarios ---------------------------------------------------------------------------------------------------
token=$(cat "$work/analyst.token")
psql_ "$db_url" "SELECT study_uid || '/series/' || series_uid || '/instances/' || sop_instance_uid FROM imaging.instances" >"$work/instances.txt"
psql_ "$db_url" "SELECT patient_id FROM imaging.patients" >"$work/patients.txt"
curl -fs "http://127.0.0.1:$orthanc_port/instances" >"$work/orthanc-instances.json"
"$py" - "$work" "$port" "$orthanc_port" "$token" <<'PY'
import json, sys
work, port, orthanc, token = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
instances = open(f"{work}/instances.txt").read().split()
patients = open(f"{work}/patients.txt").read().split()
orthanc_ids = json.load(open(f"{work}/orthanc-instances.json"))
auth = {"Authorization": f"Bearer {token}"}
scenarios = {
    "dicom-etl QIDO /studies?limit=100": {"port": port, "method": "GET", "paths": ["/studies?limit=100"], "headers": auth},
    "Orthanc /tools/find Study, Expand, Limit 100": {"port": orthanc, "method": "POST", "paths": ["/tools/find"],
        "body": json.dumps({"Level": "Study", "Query": {}, "Expand": True, "Limit": 100}), "headers": {"Content-Type": "application/json"}},
    "dicom-etl QIDO /studies?PatientID=…": {"port": port, "method": "GET", "paths": [f"/studies?PatientID={p}" for p in patients], "headers": auth},
    "Orthanc /tools/find Study PatientID=…": {"port": orthanc, "method": "POST", "paths": ["/tools/find"],
        "bodies": [json.dumps({"Level": "Study", "Query": {"PatientID": p}, "Expand": True}) for p in patients],
        "headers": {"Content-Type": "application/json"}},
    "dicom-etl WADO-RS frames/1 (octet-stream)": {"port": port, "method": "GET",
        "paths": [f"/studies/{i}/frames/1" for i in instances],
        "headers": {**auth, "Accept": 'multipart/related; type="application/octet-stream"'}},
    "Orthanc /instances/{id}/frames/0/raw": {"port": orthanc, "method": "GET",
        "paths": [f"/instances/{i}/frames/0/raw" for i in orthanc_ids], "headers": {}},
}
for name, scenario in scenarios.items():
    json.dump(scenario, open(f"{work}/scenario-{list(scenarios).index(name)}.json", "w"))
open(f"{work}/scenarios.txt", "w").write("\n".join(scenarios))
PY
index=0
while IFS= read -r name; do
  [ -n "$name" ] || continue
  printf '%-48s %s\n' "$name" "$("$py" bench/serve/load.py "$work/scenario-$index.json" "$clients" "$seconds")"
  index=$((index + 1))
done < <(cat "$work/scenarios.txt"; echo)
