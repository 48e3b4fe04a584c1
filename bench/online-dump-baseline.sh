#!/usr/bin/env bash
# The second baseline of bench/downtime.ts: the operator who takes the pg_dump ONLINE, while the
# old version still serves, and only then follows the guide: stop, checkout, deps.get, compile,
# migrate, start. Shorter downtime than bench/guide-baseline.sh (the dump is outside it), but the
# backup misses every write the old version accepted between the dump's snapshot and the stop:
# a rollback to it loses them silently.
# Environment: as bench/guide-baseline.sh (REPO, TARGET_REF, MIX, PIDFILE, NEW_PIDFILE,
# BACKUP_FILE, RUNTIME_LOG, PORT, DATABASE_URL and the app's own environment).
set -euo pipefail
ts() { date +%s%3N; }
log() { echo "$(ts) $*"; }

log "pg_dump (online, the old version serving)"
pg_dump --format=custom --no-owner --no-privileges --file="$BACKUP_FILE" --dbname="$DATABASE_URL"

log "stop"
pid=$(cat "$PIDFILE")
kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done

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
