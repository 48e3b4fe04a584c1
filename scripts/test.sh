#!/usr/bin/env bash
# The one test command (README and .ci/run): sets up, then runs every test with node's runner.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  echo "test: PostgreSQL is not answering on 127.0.0.1:5432; start it (pg_ctlcluster 15 main start) or set DG_TEST_ADMIN_DATABASE_URL." >&2
  exit 2
fi
# Three to four test files at a time each run apps with connection pools, workers and writers:
# PostgreSQL's default 100 connections run out ("sorry, too many clients already"). Raised once
# on a local cluster this script may manage (root, Debian's pg_ctlcluster), else said.
MAXCONN=$(psql -h 127.0.0.1 -U postgres -Atc 'SHOW max_connections' 2>/dev/null || echo 0)
if [ "${MAXCONN:-0}" -lt 300 ]; then
  if [ "$(id -u)" = 0 ] && command -v pg_ctlcluster >/dev/null && psql -h 127.0.0.1 -U postgres -qAtc 'ALTER SYSTEM SET max_connections = 300' >/dev/null 2>&1; then
    cluster=$(ls /etc/postgresql | sort -V | tail -1)
    echo "test: raising PostgreSQL max_connections from $MAXCONN to 300 (restarting cluster $cluster main)"
    pg_ctlcluster --skip-systemctl-redirect "$cluster" main restart
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
  else
    echo "test: PostgreSQL allows only $MAXCONN connections; the suite needs about 200 (ALTER SYSTEM SET max_connections = 300 and restart it)" >&2
    exit 2
  fi
fi
# The browser test drives Debian's Chromium (no browser download works here).
CHROMIUM="${DG_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "test: installing Debian's chromium for the browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  [ -x "$CHROMIUM" ] || { echo "test: Chromium is required at $CHROMIUM for the browser test (apt-get install chromium, or set DG_CHROMIUM)" >&2; exit 2; }
fi
mkdir -p test-artifacts
node dist/scripts/machine-speed.js 'before the suite' || true
started=$(date +%s)
# The real-BEAM file runs on its own first: its Erlang projector and release builds are the
# most CPU-bound of the suite, and beside two crash matrices on 2 cores its smoke checks timed out
# and its projector fell behind. The longest of the rest start first, so that the short ones fill
# the gaps instead of the end.
ALONE=(beam.e2e)
LONGEST=(crash-rollback.e2e crash-upgrade.e2e maintenance-window.e2e notifications.e2e soak.e2e bad-input.e2e rehearsal.e2e crash-rehearsal.e2e crash-frozen-copy.e2e rollback.e2e)
alone=()
if [ $# -gt 0 ]; then files=("$@"); else
  files=()
  for name in "${ALONE[@]}"; do [ -f "dist/test/$name.test.js" ] && alone+=("dist/test/$name.test.js"); done
  for name in "${LONGEST[@]}"; do [ -f "dist/test/$name.test.js" ] && files+=("dist/test/$name.test.js"); done
  while IFS= read -r f; do [[ " ${files[*]} ${alone[*]} " == *" $f "* ]] || files+=("$f"); done < <(find dist/test -name '*.test.js' | sort)
fi
# The runner's default is two files at a time on 2 cores (docs/decisions.md, "The test command
# runs its files itself"); DG_TEST_CONCURRENCY overrides it. The timeout is per file: bad-input
# runs 106 cases in one file. The runner prints each file's wall and CPU time and, last, a table
# of them and the failed tests by name.
run_args=(--timeout 1800000)
if [ -n "${DG_TEST_CONCURRENCY:-}" ]; then run_args+=(--concurrency "$DG_TEST_CONCURRENCY"); fi
for f in "${alone[@]}"; do run_args+=(--alone "$f"); done
status=0
node dist/scripts/run-test-files.js "${run_args[@]}" "${files[@]}" || status=$?
node dist/scripts/machine-speed.js 'after the suite' || true
echo "test: suite finished in $(( $(date +%s) - started ))s"
exit "$status"
