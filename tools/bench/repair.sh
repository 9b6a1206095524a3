#!/usr/bin/env bash
# Repository-integrity benchmark (issue 13): `ahvfs repair index` of a
# repository of more than 100k chunks beside restic's index rebuild of the
# same data, and the import speed of this build beside a baseline build
# (before record files), same image, same run.
#
#   tools/bench/repair.sh [BASE_REV]     (default base: e90323c, the last commit before record files)
#
# The image is 7 GiB of incompressible data (AES-CTR keystream), imported
# with 64 KiB chunks: 114,688 chunks. Every tool reads from the page cache
# (warmed first). Needs restic (tools/install-deps.sh bench) and ~30 GB free.
set -euo pipefail
cd "$(dirname "$0")/../.."
base_rev=${1:-e90323c}
out=${BENCH_OUT:-tools/bench/out}
mkdir -p "$out"
go build -o bin/ ./cmd/ahvfs
work=$(realpath "$(mktemp -d "$out/repair-XXXX")")
cleanup() {
  git worktree remove --force "$work/base-src" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
git worktree add -q --detach "$work/base-src" "$base_rev"
(cd "$work/base-src" && go build -o "$work/ahvfs-base" ./cmd/ahvfs)

img=$out/repair-7g.raw
if [ ! -f "$img" ]; then
  echo "building $img (7 GiB keystream) ..." >&2
  { openssl enc -aes-128-ctr -nosalt -pass pass:ahvfs-bench -pbkdf2 < /dev/zero 2>/dev/null || true; } | head -c 7516192768 > "$img.tmp"
  mv "$img.tmp" "$img"
fi
size=$(stat -c %s "$img")
cat "$img" > /dev/null
export RESTIC_PASSWORD=bench

. tools/bench/lib.sh

# Import: baseline and this build, alternately, twice each; the best of each.
runs_base=() runs_new=()
for i in 1 2; do
  for who in base new; do
    bin=bin/ahvfs; [ $who = base ] && bin=$work/ahvfs-base
    rm -rf "$work/$who"
    $bin init --repo "$work/$who" --chunk-size 64KiB > /dev/null
    t=$(secs $bin import --repo "$work/$who" --vm bench --time 2026-12-01T00:00:00Z "$img")
    if [ $who = base ]; then runs_base+=("$t"); else runs_new+=("$t"); fi
  done
done
t_base=$(best "${runs_base[@]}") t_new=$(best "${runs_new[@]}")
rm -rf "$work/base"
chunks=$(bin/ahvfs stats --repo "$work/new" --json | jq '.chunks // .blobs // empty' 2>/dev/null || true)

# Repair: delete the index and the published checkpoints, rebuild.
rm -rf "$work/new/index" "$work/new/snapshots"
sync
t_repair=$(secs bin/ahvfs repair index --repo "$work/new")
rm -rf "$work/new/index"
t_repair_all=$(secs bin/ahvfs repair index --read-data --repo "$work/new")
bin/ahvfs repair index --repo "$work/new" --json > "$work/repair.json"
bin/ahvfs cat --repo "$work/new" bench@latest disk-0 | cmp - "$img"

# restic: back up the same image, delete its index, rebuild it.
restic init -q -r "$work/restic"
restic -q -r "$work/restic" backup "$img" > /dev/null
rm -rf "$work/restic/index"/*
t_restic=$(secs sh -c "restic -q -r $work/restic rebuild-index 2>/dev/null")
t_restic_all=$(secs sh -c "restic -q -r $work/restic rebuild-index --read-all-packs 2>/dev/null")

printf '\nimage: %s bytes, 64 KiB chunks; machine: %s cores, %s\n' "$size" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf 'rebuilt: %s\n' "$(jq -c '{packs, chunks, restore_points}' "$work/repair.json")"
printf '%-48s %8s %8s\n' "operation" "seconds" "MB/s"
printf '%-48s %8s %8s\n' "ahvfs import, base $base_rev (best of 2)" "$t_base" "$(mbps "$size" "$t_base")"
printf '%-48s %8s %8s\n' "ahvfs import, this build (best of 2)" "$t_new" "$(mbps "$size" "$t_new")"
printf '%-48s %8s %8s\n' "ahvfs repair index (every pack, shard sums)" "$t_repair" "$(mbps "$size" "$t_repair")"
printf '%-48s %8s %8s\n' "ahvfs repair index --read-data (+ every ID)" "$t_repair_all" "$(mbps "$size" "$t_repair_all")"
printf '%-48s %8s %8s\n' "restic 0.14 rebuild-index (pack headers)" "$t_restic" ""
printf '%-48s %8s %8s\n' "restic 0.14 rebuild-index --read-all-packs" "$t_restic_all" "$(mbps "$size" "$t_restic_all")"
