#!/usr/bin/env bash
# Runs a command as on a slower machine: the command, its children and the local PostgreSQL
# server share a CPU quota (cgroup v1 `cpu`, needs root). CI's machine has run the suite 3-4x
# slower than a quiet session machine; `bench/under-cpu-quota.sh 0.5 npm test` is that machine.
#   usage: bench/under-cpu-quota.sh <cpus, e.g. 0.5> <command> [args...]
set -euo pipefail
cpus=$1; shift
root=/sys/fs/cgroup/cpu
[ -w "$root/cgroup.procs" ] || { echo "under-cpu-quota: needs root and cgroup v1 cpu at $root" >&2; exit 2; }
cg="$root/dgu-quota-$$"
mkdir "$cg"
echo 100000 > "$cg/cpu.cfs_period_us"
awk -v c="$cpus" 'BEGIN { printf "%d\n", c * 100000 }' > "$cg/cpu.cfs_quota_us"
release() {
  # Everything (PostgreSQL included) goes back to the root group, whatever the command did.
  while read -r pid; do echo "$pid" > "$root/cgroup.procs" 2>/dev/null || true; done < "$cg/cgroup.procs"
  rmdir "$cg" 2>/dev/null || true
}
trap release EXIT
trap 'exit 143' TERM INT HUP
for pid in $(pgrep -u postgres); do echo "$pid" > "$cg/cgroup.procs"; done
echo $$ > "$cg/cgroup.procs"
echo "under-cpu-quota: $cpus CPU for this command and PostgreSQL ($(pgrep -u postgres | wc -l) processes)" >&2
"$@"
