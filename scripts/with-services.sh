#!/usr/bin/env bash
# Starts what the tests talk to, runs the given command, stops them again:
#   - a throwaway PostgreSQL 15 cluster (Debian's binaries, run as the postgres user, unix socket + TCP on loopback)
#   - moto's S3 server on loopback, with signature checking switched on through IAM
# Exports DICOM_ETL_TEST_DATABASE_URL, DICOM_ETL_TEST_PG_SOCKET_DIR, DICOM_ETL_TEST_PG_BIN,
# DICOM_ETL_TEST_S3_ENDPOINT, DICOM_ETL_TEST_S3_ACCESS_KEY/SECRET_KEY for the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PG_BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
source scripts/lib.sh
work=$(mktemp -d /tmp/dicom-etl-test.XXXXXX)
chmod 755 "$work"
pg_port=$(free_port)
s3_port=$(free_port)

cleanup() {
  set +e
  stop_process "${moto_pid:-}"
  stop_postgres "$PG_BIN" "$work"
  rm -rf "$work"
}
trap cleanup EXIT

start_postgres "$PG_BIN" "$work" "$pg_port" -c fsync=off -c max_connections=200 || exit 1

export DICOM_ETL_TEST_PG_BIN="$PG_BIN"
export DICOM_ETL_TEST_PG_SOCKET_DIR="$work/sock"
export DICOM_ETL_TEST_PG_PORT="$pg_port"
export DICOM_ETL_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$pg_port/postgres?sslmode=disable"

# moto: the first three requests may run without auth; they create a user, its policy and a key.
INITIAL_NO_AUTH_ACTION_COUNT=3 "$VENV/bin/moto_server" -H 127.0.0.1 -p "$s3_port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$s3_port/moto-api/" >/dev/null 2>&1 && break; sleep 0.1; done
read -r ak sk < <("$VENV/bin/python" scripts/moto-credentials.py "http://127.0.0.1:$s3_port")
export DICOM_ETL_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
export DICOM_ETL_TEST_S3_ACCESS_KEY="$ak"
export DICOM_ETL_TEST_S3_SECRET_KEY="$sk"
export DICOM_ETL_TEST_S3_MOTO_PID="$moto_pid"

"$@"
