#!/usr/bin/env bash
# Benchmark: each row of issue #5's table, beside the limit it is measured
# against, in the same run on the same machine. Output goes to /dev/null;
# peak RSS comes from /usr/bin/time -v. Copies are the median of three runs;
# the one-transaction rows run once (each needs its own UPDATE).
#
#   bench/run.sh              # 1M-row bench.wide, 5M-row bench.narrow (as ../shared/bench)
#   ROWS_WIDE=200000 ROWS_NARROW=1000000 bench/run.sh   # quicker
#
# Env: SHARED_BENCH (default ../shared/bench), PORT (55433), KEEP=1 keeps the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED_BENCH="${SHARED_BENCH:-$ROOT/../shared/bench}"
PORT="${PORT:-55433}"
ROWS_WIDE="${ROWS_WIDE:-1000000}"
ROWS_NARROW="${ROWS_NARROW:-5000000}"
UPDATE_ROWS="${UPDATE_ROWS:-200000}"
TABLES_MANY="${TABLES_MANY:-10000}"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
export PGHOST=127.0.0.1 PGPORT="$PORT" PGUSER=postgres PGDATABASE=bench
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)
WORK=$(mktemp -d)
trap '[ "${KEEP:-0}" = 1 ] || "$SHARED_BENCH/stop-pg.sh" "$PORT" --purge >/dev/null 2>&1; rm -rf "$WORK"' EXIT

scripts/install-deps.sh test
command -v /usr/bin/time >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
go build -o "$WORK/tap-postgres" ./cmd/tap-postgres
TAP="$WORK/tap-postgres"

"$SHARED_BENCH/start-pg.sh" "$PORT" >/dev/null
"$SHARED_BENCH/dataset.sh" "$ROWS_WIDE" "$ROWS_NARROW" >/dev/null 2>&1

now() { date +%s.%N; }
secs() { echo "$2 - $1" | bc -l; }
rate() { echo "$1 / $2" | bc -l | xargs printf '%.0f'; }
rss() { awk -F: '/Maximum resident/ {printf "%.1f", $2/1024}' "$1"; }
row() { # label rows tap_s limit_s rss_mib target
  local tap_rate limit_rate ratio
  tap_rate=$(rate "$2" "$3"); limit_rate=$(rate "$2" "$4")
  ratio=$(echo "$tap_rate / $limit_rate" | bc -l | xargs printf '%.2f')
  printf '| %-44s | %9s | %10s | %10s | %5sx | %7s MiB | %s |\n' "$1" "$2" "$tap_rate" "$limit_rate" "$ratio" "$5" "$6"
}

cat >"$WORK/config.json" <<JSON
{"host":"127.0.0.1","port":$PORT,"user":"postgres","password":"unused","dbname":"bench","filter_dbs":"bench",
 "filter_schemas":"bench","sslmode":"disable"}
JSON
"$TAP" --config "$WORK/config.json" --discover >"$WORK/discovered.json" 2>/dev/null
catalog() { # table method [replication-key]
  python3 - "$WORK/discovered.json" "$1" "$2" "${3:-}" >"$WORK/catalog-$1-$2.json" <<'PY'
import json, sys
path, table, method, key = sys.argv[1:]
c = json.load(open(path))
for s in c["streams"]:
    for m in s["metadata"]:
        if m["breadcrumb"] == []:
            m["metadata"]["selected"] = s["table_name"] == table
            m["metadata"]["replication-method"] = method
            if key:
                m["metadata"]["replication-key"] = key
json.dump(c, sys.stdout)
PY
  echo "$WORK/catalog-$1-$2.json"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
timed() { # name command... : runs with output to /dev/null, prints seconds
  local s e
  s=$(now)
  /usr/bin/time -v -o "$WORK/$1.time" "${@:2}" >/dev/null 2>"$WORK/$1.err"
  e=$(now)
  secs "$s" "$e"
}
timed3() { # the median of three timed runs (the machine is shared)
  for _ in 1 2 3; do timed "$@"; done | median
}
copy_limit() {
  local s e
  for _ in 1 2 3; do
    s=$(now); "${PSQL[@]}" -c "\\copy (select * from bench.$1) to '/dev/null'"; e=$(now)
    secs "$s" "$e"
  done | median
}

echo "# tap-postgres benchmark  $(date -u +%FT%TZ)  $(nproc) cores  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "# $("${PSQL[@]}" -tAc 'select version()')"
echo
echo "| work | rows | tap rows/s | limit rows/s | ratio | peak RSS | target |"
echo "|---|---|---|---|---|---|---|"

for t in wide narrow; do
  n=$("${PSQL[@]}" -tAc "select count(*) from bench.$t")
  cat=$(catalog "$t" FULL_TABLE)
  tap_s=$(timed3 "full_$t" "$TAP" --config "$WORK/config.json" --catalog "$cat")
  lim_s=$(copy_limit "$t")
  target=">= 0.8x"; [ "$t" = narrow ] && target=">= 0.5x"
  row "FULL_TABLE bench.$t vs psql \\copy" "$n" "$tap_s" "$lim_s" "$(rss "$WORK/full_$t.time")" "$target"
  eval "full_${t}_s=$tap_s"
done

n=$("${PSQL[@]}" -tAc "select count(*) from bench.wide")
cat=$(catalog wide INCREMENTAL updated_at)
inc_s=$(timed3 incremental "$TAP" --config "$WORK/config.json" --catalog "$cat")
row "INCREMENTAL bench.wide (empty bookmark) vs FULL_TABLE" "$n" "$inc_s" "$full_wide_s" "$(rss "$WORK/incremental.time")" ">= 0.9x"

# LOG_BASED, once per output plugin: the tap's slot and three pg_recvlogical
# slots all made before one UPDATE, drained to /dev/null in turns (limit,
# tap, limit, tap, …; the tap confirms only its input state, so each of its
# runs reads the same changes); medians of three.
drop_slots() {
  # A walsender may outlive its client by a moment; an active slot cannot be dropped.
  for _ in $(seq 50); do
    [ "$("${PSQL[@]}" -tAc "select count(*) from pg_replication_slots where database = 'bench' and active")" = 0 ] && break
    sleep 0.2
  done
  "${PSQL[@]}" -tAc "select pg_drop_replication_slot(slot_name) from pg_replication_slots where database = 'bench'" >/dev/null
}
logbased() { # plugin
  local plugin=$1 opts cat endpos s e lim_s log_s big_s
  drop_slots
  "${PSQL[@]}" -c "drop publication if exists stitch_bench" >/dev/null 2>&1
  if [ "$plugin" = pgoutput ]; then
    "${PSQL[@]}" -c "create publication stitch_bench for table bench.wide" >/dev/null
    opts=(-o proto_version=1 -o publication_names=stitch_bench)
  else
    opts=(-o format-version=2)
  fi
  "${PSQL[@]}" -tAc "select 1 from pg_create_logical_replication_slot('stitch_bench', '$plugin')" >/dev/null
  cat=$(catalog wide LOG_BASED)
  "$TAP" --config "$WORK/config.json" --catalog "$cat" 2>/dev/null | tail -1 |
    python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["value"]))' >"$WORK/state.json"
  for i in 1 2 3; do
    "${PSQL[@]}" -tAc "select 1 from pg_create_logical_replication_slot('bench_limit_$i', '$plugin')" >/dev/null
  done
  "${PSQL[@]}" -c "update bench.wide set int_col = int_col + 1 where id <= $UPDATE_ROWS"
  endpos=$("${PSQL[@]}" -tAc "select pg_current_wal_insert_lsn()")
  : >"$WORK/limit_$plugin" ; : >"$WORK/tap_$plugin"
  for i in 1 2 3; do
    s=$(now)
    "$PGBIN/pg_recvlogical" -d bench --slot="bench_limit_$i" --start --endpos="$endpos" "${opts[@]}" --no-loop -f - >/dev/null
    e=$(now)
    secs "$s" "$e" >>"$WORK/limit_$plugin"
    timed "logbased_$plugin" "$TAP" --config "$WORK/config.json" --catalog "$cat" --state "$WORK/state.json" >>"$WORK/tap_$plugin"
  done
  lim_s=$(median <"$WORK/limit_$plugin")
  log_s=$(median <"$WORK/tap_$plugin")
  row "LOG_BASED $plugin $UPDATE_ROWS-row UPDATE vs pg_recvlogical" "$UPDATE_ROWS" "$log_s" "$lim_s" "$(rss "$WORK/logbased_$plugin.time")" ">= 0.9x"
  eval "log_${plugin}_s=$log_s"

  # One transaction updating every row of bench.wide, streamed by the tap.
  "$TAP" --config "$WORK/config.json" --catalog "$cat" --state "$WORK/state.json" 2>/dev/null | grep '"STATE"' | tail -1 |
    python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["value"]))' >"$WORK/state2.json"
  "${PSQL[@]}" -c "update bench.wide set int_col = int_col + 1"
  big_s=$(timed "bigtx_$plugin" "$TAP" --config "$WORK/config.json" --catalog "$cat" --state "$WORK/state2.json")
  local limit="<= 128 MiB"
  [ "$plugin" = pgoutput ] && limit="<= 64 MiB"
  printf '| %-44s | %9s | %10s | %10s | %6s | %7s MiB | %s |\n' "LOG_BASED $plugin one $n-row transaction" "$n" "$(rate "$n" "$big_s")" "-" "-" "$(rss "$WORK/bigtx_$plugin.time")" "$limit"
}
logbased wal2json
logbased pgoutput
row "LOG_BASED pgoutput vs the tap's own wal2json path" "$UPDATE_ROWS" "$log_pgoutput_s" "$log_wal2json_s" "$(rss "$WORK/logbased_pgoutput.time")" "speed-up"
drop_slots
"${PSQL[@]}" -c "drop publication if exists stitch_bench" >/dev/null

# The runner: a job copying bench.wide into a PostgreSQL destination on the
# same server, against psql piping \copy out into \copy in. The first job
# loads an empty table; the second (a new FULL_TABLE version) merges by key.
"${PSQL[@]}" -d postgres -c "drop database if exists warehouse" -c "create database warehouse"
"${PSQL[@]}" -d warehouse -c "create schema bench"
# The limit loads the same table definition, primary key included.
"$PGBIN/pg_dump" -s -t bench.wide bench | "${PSQL[@]}" -d warehouse >/dev/null
s=$(now)
"${PSQL[@]}" -c "\\copy (select * from bench.wide) to stdout" | "${PSQL[@]}" -d warehouse -c "\\copy bench.wide from stdin"
e=$(now)
pipe_s=$(secs "$s" "$e")
cat >"$WORK/integration.yaml" <<YAML
name: bench runner
connection: {host: 127.0.0.1, port: $PORT, user: postgres, password: unused, dbname: bench, filter_dbs: bench, filter_schemas: bench, sslmode: disable}
default_replication_method: FULL_TABLE
tables: [{schema: bench, table: wide}]
destination: {type: postgres, dsn: "postgres://postgres@127.0.0.1:$PORT/warehouse?sslmode=disable"}
YAML
load_s=$(timed runner_load "$TAP" run --integration "$WORK/integration.yaml" --store "$WORK/store")
row "runner job bench.wide → PostgreSQL (empty) vs psql \\copy | \\copy" "$n" "$load_s" "$pipe_s" "$(rss "$WORK/runner_load.time")" ">= 0.3x"
merge_s=$(timed runner_merge "$TAP" run --integration "$WORK/integration.yaml" --store "$WORK/store")
row "runner job bench.wide → PostgreSQL (upsert) vs psql \\copy | \\copy" "$n" "$merge_s" "$pipe_s" "$(rss "$WORK/runner_merge.time")" ">= 0.1x"

# Discovery of many tables.
"${PSQL[@]}" -d postgres -c "drop database if exists many" -c "create database many"
# In batches: one transaction cannot lock thousands of new tables.
for ((from = 1; from <= TABLES_MANY; from += 1000)); do
  to=$((from + 999 < TABLES_MANY ? from + 999 : TABLES_MANY))
  "${PSQL[@]}" -d many -c "do \$\$ begin for i in $from..$to loop execute format('create table t%s (id bigint primary key, a text, b numeric(10,2), c timestamptz)', i); end loop; end \$\$"
done
sed 's/"dbname":"bench","filter_dbs":"bench",/"dbname":"many","filter_dbs":"many",/; s/"filter_schemas":"bench",//' "$WORK/config.json" >"$WORK/many.json"
disc_s=$(timed discovery "$TAP" --config "$WORK/many.json" --discover)
printf '| %-44s | %9s | %10s | %10s | %6s | %7s MiB | %s |\n' "discovery of $TABLES_MANY tables" "$TABLES_MANY" "$(printf '%.2f s' "$disc_s")" "-" "-" "$(rss "$WORK/discovery.time")" "<= 5 s"
