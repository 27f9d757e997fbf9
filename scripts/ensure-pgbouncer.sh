#!/usr/bin/env bash
# The PgBouncer tests (test/pgbouncer.test.ts, test/*.pgbouncer.test.ts) start
# Debian's pgbouncer in front of the test PostgreSQL; this installs it when it
# is missing (CI runs as root, without a terminal).
set -euo pipefail
if command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "ensure-pgbouncer: no pgbouncer and no apt-get: install PgBouncer (>= 1.18) so that pgbouncer is on the PATH" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "ensure-pgbouncer: installing pgbouncer needs root (or sudo)" >&2; exit 1; }
  sudo=(sudo -n)
fi
echo "ensure-pgbouncer: installing Debian's pgbouncer for the PgBouncer tests" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq </dev/null >&2
"${sudo[@]}" apt-get install -y -qq --no-install-recommends pgbouncer </dev/null >&2
/usr/sbin/pgbouncer --version >&2
