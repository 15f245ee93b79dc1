#!/usr/bin/env bash
# Creates the secret files docker-compose.yaml mounts (deployment/secrets/, never committed): a database
# password, S3 access key and secret for MinIO, and the pseudonymisation key. Existing files are kept:
# a new pseudonymisation key gives new pseudonyms (see README, "Running in production").
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p secrets
umask 022   # the containers run as uid 10001 and read the bind-mounted files: world-readable, folder 0700
chmod 700 secrets
new() { [ -s "secrets/$1" ] || { head -c "$2" /dev/urandom | base64 | tr -d '\n/+=' > "secrets/$1"; echo "created secrets/$1"; }; }
new db_password 24
new s3_access_key 15
new s3_secret_key 30
new pseudonym_key 48
