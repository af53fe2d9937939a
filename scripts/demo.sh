#!/usr/bin/env bash
# README command 1: a throwaway local PostgreSQL with sample data, two runner
# jobs (one table per replication method) into a local PostgreSQL warehouse
# around changes in the source, then the loading report of both. The binary
# is built into bin/ and the commands the demo prints name it by its full
# path, so they work as printed from any directory.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh demo
go build -o bin/tap-postgres ./cmd/tap-postgres
exec "$PWD/bin/tap-postgres" demo "$@"
