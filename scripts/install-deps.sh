#!/usr/bin/env bash
# Installs with apt what a command needs when it is missing:
#   scripts/install-deps.sh demo   PostgreSQL 15 server binaries
#   scripts/install-deps.sh test   those, the wal2json plugin, sshd (tunnel tests)
#                                  and Debian's chromium (the status page's browser test)
# The demo and the tests start their own throwaway clusters and sshd; the
# services these Debian packages start on install (a "15 main" cluster on
# port 5432, sshd on port 22) are not needed, so a package installed here
# for the first time does not start its service (policy-rc.d, the Debian
# mechanism for it). The README ("Installing") says what stays behind.
set -euo pipefail
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"
PGLIB="$(dirname "$PGBIN")/lib"
case "${1:-}" in
  demo | test) ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac
has_server=yes has_wal2json=yes has_sshd=yes has_chromium=yes
[ -x "$PGBIN/initdb" ] || has_server=no
[ -f "$PGLIB/wal2json.so" ] || has_wal2json=no
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || has_sshd=no
command -v chromium >/dev/null 2>&1 || [ -n "${CHROMIUM:-}" ] || has_chromium=no
packages=()
if [ "$1" = demo ] && [ $has_server = no ]; then
  packages=(postgresql-15)
elif [ "$1" = test ] && [ "$has_server$has_wal2json$has_sshd" != yesyesyes ]; then
  packages=(postgresql-15 postgresql-15-wal2json openssh-server)
fi
if [ "$1" = test ] && [ $has_chromium = no ]; then
  packages+=(chromium)
fi
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi
new_services=()
[ $has_server = yes ] || new_services+=(postgresql)
[ "$1" = demo ] || [ $has_sshd = yes ] || new_services+=(ssh sshd)
echo "installing: ${packages[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
policy=/usr/sbin/policy-rc.d
if [ ${#new_services[@]} -gt 0 ] && [ ! -e "$policy" ]; then
  # Services already on the machine keep starting and restarting as usual.
  $SUDO tee "$policy" >/dev/null <<POLICY
#!/bin/sh
# Written by tap-postgres' scripts/install-deps.sh for the length of one install.
case "\${1%.service}" in
$(printf '  %s | %s@*) exit 101 ;;\n' $(for s in "${new_services[@]}"; do echo "$s $s"; done))
esac
exit 0
POLICY
  $SUDO chmod 755 "$policy"
  trap '$SUDO rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
