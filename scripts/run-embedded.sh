#!/usr/bin/env bash
# What `make run` starts: the ingestion daemon and the inference worker in one process, on ./drop with
# everything inside ./var — a private PostgreSQL cluster (initialised on first start, stopped on exit), a
# filesystem object store and a pseudonymisation key generated on first start (./var/pseudonym.key; never
# commit it, keep a backup: the same key always gives the same pseudonyms). Drop DICOM files into ./drop:
# complete chest radiograph series come back as rows of inference.diagnoses. Ctrl-C drains and stops both.
#
# Run as root, the cluster's server runs as the `postgres` system user; when that user cannot reach ./var
# (a clone under /root, mode 0700), the cluster lives in /var/lib/dicom-etl/postgres/<id>, linked from
# ./var/postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p drop var
chmod 711 var
key=var/pseudonym.key
if [ ! -s "$key" ]; then
  # Only the key is private to its owner: the umask is changed in a subshell, never for the daemon.
  (umask 077 && head -c 48 /dev/urandom | base64 | tr -d '\n' > "$key.new" && mv "$key.new" "$key")
  echo "generated a new pseudonymisation key in $key"
fi
exec .build/release/dicom-etl run --with-worker --drop-folder ./drop --data-dir ./var --key-file "$key" --log-format text "$@"
