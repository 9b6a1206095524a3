#!/usr/bin/env bash
# Engine benchmark (issue 2): full import, re-import of the unchanged image and
# `cat`, against restic and borg (lz4) on the same real-data image, same run.
#
#   tools/bench/engine.sh [IMAGE]        (default: a 4 GiB ext4 image from mkimage)
#
# Every tool reads the image from the page cache (warmed first), so the
# figures compare the tools, not the disk. Prints one table.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${BENCH_OUT:-tools/bench/out}
mkdir -p "$out"
go build -o bin/ ./cmd/ahvfs ./tools/mkimage
img=${1:-$out/engine-4g.raw}
if [ ! -f "$img" ]; then
  echo "building $img (real files, 70% full) ..." >&2
  bin/mkimage --out "$img" --size 4GiB --seed 3
fi
size=$(stat -c %s "$img")
cat "$img" > /dev/null
work=$(mktemp -d "$out/run-XXXX")
trap 'rm -rf "$work"' EXIT
export RESTIC_PASSWORD=bench BORG_PASSPHRASE=bench BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes

. tools/bench/lib.sh

bin/ahvfs init --repo "$work/ahvfs" > /dev/null
t_ahvfs=$(secs bin/ahvfs import --repo "$work/ahvfs" --vm bench "$img"); rss_ahvfs=$(cat "$work/rss")
t_re=$(secs bin/ahvfs import --repo "$work/ahvfs" --vm bench "$img")
t_cat=$(secs sh -c "bin/ahvfs cat --repo $work/ahvfs bench@latest disk-0 > /dev/null")
bin/ahvfs cat --repo "$work/ahvfs" bench@latest disk-0 | cmp - "$img"
packs=$(du -cb "$work"/ahvfs/packs/*/*.pack | tail -1 | cut -f1)
all_ahvfs=$(du_b "$work/ahvfs")

echo secret > "$work/pw"
bin/ahvfs init --repo "$work/ahvfs-enc" --encrypt --repo-password-file "$work/pw" > /dev/null
t_enc=$(secs env AHVFS_REPO_PASSWORD_FILE="$work/pw" bin/ahvfs import --repo "$work/ahvfs-enc" --vm bench "$img")

restic init -q -r "$work/restic"
t_restic=$(secs restic -q -r "$work/restic" backup "$img")
all_restic=$(du_b "$work/restic")

borg init -e none "$work/borg"
t_borg=$(secs borg create --compression lz4 "$work/borg::a" "$img")
all_borg=$(du_b "$work/borg")

printf '\nimage: %s (%s bytes), machine: %s cores, %s\n' "$img" "$size" "$(nproc)" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
printf '%-32s %8s %10s %14s\n' "operation" "seconds" "MB/s" "repository"
printf '%-32s %8s %10s %14s\n' "ahvfs import (full)" "$t_ahvfs" "$(mbps "$size" "$t_ahvfs")" "$all_ahvfs"
printf '%-32s %8s %10s %14s\n' "  of which packs (no parity)" "" "" "$packs"
printf '%-32s %8s %10s %14s\n' "ahvfs import (full, encrypted)" "$t_enc" "$(mbps "$size" "$t_enc")" ""
printf '%-32s %8s %10s %14s\n' "restic backup (full)" "$t_restic" "$(mbps "$size" "$t_restic")" "$all_restic"
printf '%-32s %8s %10s %14s\n' "borg create lz4 (full)" "$t_borg" "$(mbps "$size" "$t_borg")" "$all_borg"
printf '%-32s %8s %10s\n' "ahvfs re-import (unchanged)" "$t_re" "$(mbps "$size" "$t_re")"
printf '%-32s %8s %10s\n' "ahvfs cat" "$t_cat" "$(mbps "$size" "$t_cat")"
awk -v a="$t_ahvfs" -v r="$t_restic" -v b="$t_borg" -v rss="$rss_ahvfs" -v pa="$packs" -v ab="$all_ahvfs" -v bb="$all_borg" 'BEGIN {
  printf "\nfull import vs restic: %.1fx faster (target 6x); vs borg lz4: %.1fx faster (target 3x)\n", r/a, b/a
  printf "repository vs borg: %.2f with parity, %.2f packs only (target <= 1.00)\n", ab/bb, pa/bb
  printf "peak RSS of the import: %.0f MiB (target < 512 MiB)\n", rss/1024 }'
