#!/usr/bin/env bash
# Installs everything dg-upgrade needs on a fresh machine of this kind: npm packages,
# the TypeScript build, and the Temporal CLI (built from source once into the user cache).
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1 || { echo "setup: '$1' is required but not on PATH. $2" >&2; exit 2; }; }
need node "Install Node.js 20+."
need npm "Install npm (comes with Node.js)."
need git "Install git (apt-get install git)."
need go "Install Go 1.25+; it builds the Temporal CLI."
need pg_dump "Install the PostgreSQL client tools (apt-get install postgresql-client)."
# The real BEAM sample target (test/fixtures/beam-target) needs Elixir, inets and a pure-Erlang
# PostgreSQL driver: Debian's packages, since no Hex package can be fetched here.
if ! command -v mix >/dev/null 2>&1 || ! ls -d /usr/lib/erlang/lib/inets-* /usr/lib/erlang/lib/p1_pgsql-* >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing Elixir, erlang-inets and erlang-p1-pgsql (apt-get) for the BEAM sample target"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq elixir erlang-inets erlang-p1-pgsql >/dev/null
  else
    echo "setup: Elixir (mix), erlang-inets and erlang-p1-pgsql are required for the BEAM sample target; run as root: apt-get install elixir erlang-inets erlang-p1-pgsql" >&2
    exit 2
  fi
fi
node -e 'const [maj]=process.versions.node.split(".").map(Number); if (maj<20) { console.error(`setup: Node.js 20+ required, found ${process.versions.node}`); process.exit(2) }'

# npm ci only when the lockfile changed since the last install.
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
echo "setup: compiling TypeScript"
npx tsc -p .
node dist/src/worker/bundle.js
node dist/src/stack/ensureTemporalCliMain.js
