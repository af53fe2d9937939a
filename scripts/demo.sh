#!/usr/bin/env bash
# README command 1: a throwaway local PostgreSQL with sample data, two runner
# jobs (one table per replication method) into a local PostgreSQL warehouse
# around changes in the source, then the loading report of both.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
go run ./cmd/tap-postgres demo "$@"
