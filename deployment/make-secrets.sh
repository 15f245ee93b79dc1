#!/usr/bin/env bash
# Creates what docker-compose.yaml mounts from deployment/secrets/ (never committed):
#   db_password, s3_access_key, s3_secret_key, pseudonym_key   random secrets, owned by uid 10001 (the
#       dicom-etl image's user) with mode 0600: dicom-etl refuses a secret others could read. PostgreSQL,
#       MinIO and mc read them as root.
#   tls/ca.pem, tls/ca.key     a site CA made for this host (the key stays here, mode 0600, for renewals)
#   tls/server.pem             a certificate for the host names postgres, minio and localhost, from that CA
#   tls/postgres-server.key    its key for PostgreSQL: root, group postgres (999), mode 0640, as PostgreSQL asks
#   minio-certs/               the same certificate and key, and the CA, laid out for MinIO's --certs-dir
# Existing files are kept: a new pseudonymisation key gives new pseudonyms (see SECURITY.md, "Rotating the
# key"). Run as root (sudo): only root can give the files to uid 10001 and to the postgres group.
# Needs openssl.
set -euo pipefail
cd "$(dirname "$0")"
if [ "$(id -u)" != 0 ]; then
  echo "run as root (sudo $0): the secret files must belong to uid 10001, the containers' user, with mode 0600" >&2
  exit 1
fi
APP_UID=10001
POSTGRES_GID=999   # the postgres group of the postgres:15-bookworm image
umask 077
mkdir -p secrets/tls secrets/minio-certs/CAs
chmod 700 secrets
chmod 755 secrets/tls secrets/minio-certs secrets/minio-certs/CAs   # certificates are public; keys are not

new() {
  if [ ! -s "secrets/$1" ]; then
    head -c "$2" /dev/urandom | base64 | tr -d '\n/+=' > "secrets/$1"
    echo "created secrets/$1"
  fi
  chown "$APP_UID:$APP_UID" "secrets/$1"
  chmod 600 "secrets/$1"
}
new db_password 24
new s3_access_key 15
new s3_secret_key 30
new pseudonym_key 48

tls=secrets/tls
if [ ! -s "$tls/ca.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=dicom-etl site CA ($(hostname))" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  echo "created $tls/ca.pem (site CA)"
fi
if [ ! -s "$tls/server.pem" ]; then
  printf 'subjectAltName=DNS:postgres,DNS:minio,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$tls/server.ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=dicom-etl services" \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial -days 825 \
    -extfile "$tls/server.ext" -out "$tls/server.pem" 2>/dev/null
  rm -f "$tls/server.csr" "$tls/server.ext"
  echo "created $tls/server.pem (postgres, minio, localhost)"
fi
chmod 600 "$tls/ca.key" "$tls/server.key"
chmod 644 "$tls/ca.pem" "$tls/server.pem"
install -o 0 -g "$POSTGRES_GID" -m 0640 "$tls/server.key" "$tls/postgres-server.key"
install -o 0 -g 0 -m 0644 "$tls/server.pem" secrets/minio-certs/public.crt
install -o 0 -g 0 -m 0600 "$tls/server.key" secrets/minio-certs/private.key
install -o 0 -g 0 -m 0644 "$tls/ca.pem" secrets/minio-certs/CAs/ca.pem
