#!/usr/bin/env bash
# README command 2: the whole test suite against real PostgreSQL 15 clusters
# the tests start themselves, then the version matrix.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh test
go vet ./...
go test -count=1 -timeout 10m ./...
# PostgreSQL 12, 13, 14, 16, 17, 18 (README, "Tests").
scripts/test-matrix.sh
