#!/usr/bin/env bash
# bench/catalog/run.sh: instance upserts per second through Catalog, beside a one-transaction-per-row baseline
# and PostgreSQL COPY, all in one run against the throwaway PostgreSQL of scripts/with-services.sh.
#   bench/catalog/run.sh [rows=10000] [batch=500]       (BENCH_CONFIGURATION=debug to skip the release build)
set -euo pipefail
cd "$(dirname "$0")/../.."
configuration=${BENCH_CONFIGURATION:-release}
swift build -c "$configuration" --product catalog-bench >/dev/null
binary="$(swift build -c "$configuration" --show-bin-path)/catalog-bench"
./scripts/with-services.sh bash -c "\"$binary\" \"\$DICOM_ETL_TEST_DATABASE_URL\" ${1:-10000} ${2:-500}"
