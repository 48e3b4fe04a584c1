#!/usr/bin/env bash
# How fast this machine's disk takes a 1.2 GiB write + fsync, depending on what it did before:
#   kept:    a 1.2 GiB file written, synced and kept, then T seconds, then the timed write;
#   deleted: a 1.2 GiB file written, synced and deleted, then T seconds, then the timed write.
# The root filesystem is ext4 mounted with `discard` on a virtual disk. A FILE_COPY of a
# database is such a write; this is why the benches take their floors and approvals in the same
# sequence as what they compare (docs/decisions.md, "A copy is compared with a copy made in the same sequence").
#   bash bench/disk-fast-path.sh [dir=/var/lib/postgresql] [waits="0 10 30 60 90"]
set -euo pipefail
dir=${1:-/var/lib/postgresql}
waits=${2:-0 10 30 60 90}
src=$(mktemp -p /dev/shm)
trap 'rm -f "$src" "$dir/dgu-fastpath-a.bin" "$dir/dgu-fastpath-b.bin"' EXIT
head -c 1200M /dev/urandom > "$src"
for mode in kept deleted; do
  for t in $waits; do
    cp "$src" "$dir/dgu-fastpath-a.bin" && sync "$dir/dgu-fastpath-a.bin"
    [ "$mode" = deleted ] && rm -f "$dir/dgu-fastpath-a.bin"
    sleep "$t"
    s=$(date +%s%N); cp "$src" "$dir/dgu-fastpath-b.bin" && sync "$dir/dgu-fastpath-b.bin"; e=$(date +%s%N)
    echo "$(date -u +%T) $mode, then ${t}s: a 1.2 GiB write+fsync $(( (e - s) / 1000000 )) ms"
    rm -f "$dir/dgu-fastpath-a.bin" "$dir/dgu-fastpath-b.bin"
    sleep 30
  done
done
