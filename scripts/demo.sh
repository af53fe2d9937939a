#!/usr/bin/env bash
# README command 1: a throwaway local PostgreSQL with sample data, discovered
# and synced end to end (FULL_TABLE); prints a per-stream summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
go run ./cmd/tap-postgres demo "$@"
