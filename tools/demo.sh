#!/usr/bin/env bash
# make demo: the main job end to end on this machine. Builds a real ext4 disk
# image from real files, stores it, changes it, stores it again (only the
# changed chunks are new), lists, restores byte for byte and verifies.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=${DEMO_DIR:-demo}
rm -rf "$demo"; mkdir -p "$demo"
export AHVFS_REPO="$demo/repo"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building a 1 GiB ext4 guest disk from real files (tools/mkimage)"
bin/mkimage --out "$demo/web01-disk0.raw" --size 1GiB --seed 1
bin/mkimage --out "$demo/web01-disk1.raw" --table gpt --part fat32:64MiB --part ext4:256MiB --seed 2

say "ahvfs init"
bin/ahvfs init --chunk-size 1MiB --parity 10+2

say "ahvfs import (first restore point)"
bin/ahvfs import --vm web01 --time 2026-11-22T01:00:00Z "$demo/web01-disk0.raw" "$demo/web01-disk1.raw"

say "the guest writes 16 MiB; import again: only the changed chunks are stored"
dd if=/usr/local/go/bin/go of="$demo/web01-disk0.raw" bs=1M count=16 seek=300 conv=notrunc status=none
bin/ahvfs import --vm web01 --time 2026-11-22T02:00:00Z "$demo/web01-disk0.raw" "$demo/web01-disk1.raw"

say "ahvfs list"
bin/ahvfs list

say "ahvfs cat web01@latest disk-0 equals the disk"
bin/ahvfs cat web01@latest disk-0 | cmp - "$demo/web01-disk0.raw" && echo "identical"

say "ahvfs stats"
bin/ahvfs stats

say "ahvfs verify --read-data"
bin/ahvfs verify --read-data
