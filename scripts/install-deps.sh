#!/usr/bin/env bash
# Installs what the tap's demo and tests need when it is missing:
# PostgreSQL 15 server binaries, the wal2json plugin and sshd (for tunnel tests).
set -euo pipefail
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
PGLIB="$(dirname "$PGBIN")/lib"
missing=()
[ -x "$PGBIN/initdb" ] || missing+=(postgresql-15)
[ -f "$PGLIB/wal2json.so" ] || missing+=(postgresql-15-wal2json)
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql-15 postgresql-15-wal2json openssh-server >/dev/null
