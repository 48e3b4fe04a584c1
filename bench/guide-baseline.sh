#!/usr/bin/env bash
# The seed guide's upgrade, done literally by hand (the baseline of bench/downtime.ts):
# stop, pg_dump, checkout, deps.get, compile, migrate, start. No build before the stop, no
# frozen copy: what an operator following UPGRADE_AND_ROLLBACK.md step by step does.
# With DUMP_ONLINE=1, the second baseline: the operator who takes the pg_dump while the old
# version still serves, then stops. Shorter downtime (the dump is outside it), but the backup
# misses every write the old version accepted between the dump's snapshot and the stop: a
# rollback to it loses them silently.
# Environment (set by the bench): REPO (the checkout the app runs from), TARGET_REF, MIX,
# PIDFILE (pid of the running app), NEW_PIDFILE, BACKUP_FILE, RUNTIME_LOG, PORT, DATABASE_URL
# and the app's own environment (MIX_ENV, SECRET_KEY_BASE, ...).
set -euo pipefail
ts() { date +%s%3N; }
log() { echo "$(ts) $*"; }

dump() {
  log "pg_dump$1"
  pg_dump --format=custom --no-owner --no-privileges --file="$BACKUP_FILE" --dbname="$DATABASE_URL"
}

if [ "${DUMP_ONLINE:-}" = 1 ]; then dump " (online, the old version serving)"; fi

log "stop"
pid=$(cat "$PIDFILE")
kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done

if [ "${DUMP_ONLINE:-}" != 1 ]; then dump ""; fi

log "checkout $TARGET_REF"
git -C "$REPO" -c advice.detachedHead=false checkout --quiet "$TARGET_REF"

cd "$REPO/beam"
log "deps.get"
"$MIX" deps.get >/dev/null
log "compile"
"$MIX" compile >/dev/null
log "migrate"
"$MIX" ecto.migrate >/dev/null

log "start"
setsid "$MIX" phx.server >>"$RUNTIME_LOG" 2>&1 < /dev/null &
echo $! > "$NEW_PIDFILE"
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/api/healthz")" = 200 ]; do sleep 0.05; done
log "serving"
