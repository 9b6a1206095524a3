#!/usr/bin/env bash
# Retention benchmark (issue 14): the same history of restore points in
# ahvfs and in restic, then `ahvfs prune` + `ahvfs gc` against
# `restic forget --prune` with the same policy, same run; with each one's
# time, peak RSS and repository size before and after.
#
#   tools/bench/retention.sh            (VMS=1 POINTS=30 SIZE_MIB=1024 CHANGE_MIB=64 to change the history)
#
# The history: VMS VMs, each one disk of SIZE_MIB of incompressible data,
# backed up once a day for POINTS days, each day with CHANGE_MIB rewritten
# at another place. Policy: --keep-last 3 --keep-daily 7 --keep-weekly 2
# (UTC for both), applied per VM (restic: per host). Needs restic
# (tools/install-deps.sh bench), openssl and ~3x VMS x SIZE_MIB free.
# KEEP=1 keeps the work directory, with copies of both repositories as
# they were before pruning.
set -euo pipefail
cd "$(dirname "$0")/../.."
vms=${VMS:-1} points=${POINTS:-30} size_mib=${SIZE_MIB:-1024} change_mib=${CHANGE_MIB:-64}
out=${BENCH_OUT:-tools/bench/out}
mkdir -p "$out"
go build -o bin/ ./cmd/ahvfs
work=$(realpath "$(mktemp -d "$out/retention-XXXX")")
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
export RESTIC_PASSWORD=bench TZ=UTC
keystream() { openssl enc -aes-128-ctr -nosalt -pass "pass:$1" -pbkdf2 < /dev/zero 2>/dev/null | head -c "$2" || true; }

bin/ahvfs init --repo "$work/ahvfs" > /dev/null
restic init -q -r "$work/restic"
for v in $(seq 1 "$vms"); do keystream "base$v" $((size_mib << 20)) > "$work/vm$v.raw"; done
for i in $(seq 1 "$points"); do
  day=$(date -u -d "2026-01-01 + $i days" +%Y-%m-%d)
  for v in $(seq 1 "$vms"); do
    img=$work/vm$v.raw
    off=$(( (i * 7919 + v * 104729) % (size_mib - change_mib) ))
    keystream "vm$v-day$i" $((change_mib << 20)) | dd of="$img" bs=1M seek="$off" conv=notrunc status=none
    bin/ahvfs import --repo "$work/ahvfs" --vm "bench$v" --time "${day}T01:00:00Z" "$img" > /dev/null
    restic -q -r "$work/restic" backup --host "bench$v" --time "$day 01:00:00" "$img" > /dev/null
  done
done
rm -f "$work"/vm*.raw

. tools/bench/lib.sh
measure() { # label, command...: seconds and peak RSS (KiB)
  secs=$(secs_to "$work/last.out" "${@:2}") rss=$(cat "$work/rss")
  printf '%-44s %8s s %8s MiB\n' "$1" "$secs" $((rss / 1024))
}
size() { du -sm "$1" | cut -f1; }
a0=$(size "$work/ahvfs") r0=$(size "$work/restic")
policy=(--keep-last 3 --keep-daily 7 --keep-weekly 2)
printf '\nhistory: %s VMs x %s daily points of a %s MiB disk, %s MiB changed a day; policy: %s\n' "$vms" "$points" "$size_mib" "$change_mib" "${policy[*]}"
printf '%-44s %10s %12s\n' "operation" "time" "peak RSS"
if [ -n "${KEEP:-}" ]; then cp -a "$work/ahvfs" "$work/ahvfs-before"; cp -a "$work/restic" "$work/restic-before"; sync; fi
measure "ahvfs prune" bin/ahvfs prune --repo "$work/ahvfs" "${policy[@]}"
measure "ahvfs gc (--max-unused 5%)" bin/ahvfs gc --repo "$work/ahvfs" --json --max-unused 5%
cp "$work/last.out" "$work/gc.json"
measure "restic $(restic version | cut -d' ' -f2) forget --prune" restic -r "$work/restic" forget --group-by host "${policy[@]}" --prune
jq -c '{packs_deleted, packs_rewritten, bytes_rewritten, reclaimed_bytes, phase_seconds: (.phase_seconds | map_values(. * 1000 | round / 1000))}' "$work/gc.json"
kept_a=$(bin/ahvfs list --repo "$work/ahvfs" --json | jq length)
kept_r=$(restic -r "$work/restic" snapshots --json | jq length)
printf 'kept: ahvfs %s, restic %s restore points\n' "$kept_a" "$kept_r"
printf 'repository MiB before -> after: ahvfs %s -> %s, restic %s -> %s\n' "$a0" "$(size "$work/ahvfs")" "$r0" "$(size "$work/restic")"
bin/ahvfs verify --repo "$work/ahvfs" --read-data | tail -1
