#!/usr/bin/env bash
# NFS export benchmark: sequential read of a restore point's disk through
# `ahvfs nfs-serve` (libnfs's nfs-cat to /dev/null) beside cat of the same
# disk through the FUSE mount (`ahvfs mount`), same run. Target: NFS >= 0.8x
# the FUSE mount. A kernel NFS export of the raw image is the third line
# when this kernel has an NFS server (nfsd); otherwise the script says so.
#
#   tools/bench/nfs.sh [IMAGE]   (default: the 4 GiB ext4 image engine.sh builds;
#                                 SIZE=512MiB builds a smaller one; ROUNDS=2)
#
# Root: FUSE, and the page cache is dropped before every timed step. Each
# round starts the server and the mount afresh, so nothing is in the
# engine's chunk cache either: every read decodes its chunks.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${BENCH_OUT:-tools/bench/out}
mkdir -p "$out"
[ "$(id -u)" = 0 ] || { echo "nfs.sh: run as root (FUSE, drop_caches)" >&2; exit 1; }
tools/install-deps.sh bench
for t in nfs-cat python3; do
  command -v "$t" > /dev/null || { echo "nfs.sh: needs $t" >&2; exit 1; }
done
go build -o bin/ ./cmd/ahvfs ./tools/mkimage
sz=${SIZE:-4GiB}
img=${1:-$out/engine-4g.raw}
[ -n "${1:-}" ] || [ "$sz" = 4GiB ] || img=$out/nfs-$sz.raw
if [ ! -f "$img" ]; then
  echo "building $img (real files, 70% full) ..." >&2
  bin/mkimage --out "$img.tmp" --size "$sz" --seed 3
  mv "$img.tmp" "$img"
fi
size=$(stat -c %s "$img")
rounds=${ROUNDS:-2}
load0=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(realpath "$(mktemp -d "$out/nfs-XXXX")")
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true; fi
  umount -l "$work/mnt" 2> /dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
. tools/bench/lib.sh
stop() { kill "$pid"; wait "$pid" 2> /dev/null || true; pid=; }

t=2026-01-01T00:00:00Z
bin/ahvfs init --repo "$work/repo" > /dev/null
bin/ahvfs import --repo "$work/repo" --vm bench --time "$t" "$img" > /dev/null
mkdir "$work/mnt"
fuse=() nfs=()
for r in $(seq "$rounds"); do
  # FUSE: a fresh mount, cat of the disk.
  bin/ahvfs mount --repo "$work/repo" "$work/mnt" > /dev/null 2> "$work/mount.log" &
  pid=$!
  for _ in $(seq 100); do [ -f "$work/mnt/bench/$t/disk-0.raw" ] && break; sleep 0.1; done
  cold
  fuse+=("$(secs cat "$work/mnt/bench/$t/disk-0.raw")")
  stop
  # NFS: a fresh server on a private port, nfs-cat of the disk.
  port=$(free_port)
  bin/ahvfs nfs-serve --repo "$work/repo" --listen "127.0.0.1:$port" --portmap off > /dev/null 2> "$work/nfs.log" &
  pid=$!
  wait_port "$port" || { echo "nfs.sh: nfs-serve did not listen:" >&2; cat "$work/nfs.log" >&2; exit 1; }
  cold
  url="nfs://127.0.0.1/bench/$t/disk-0.raw?version=3&nfsport=$port&mountport=$port&auto-traverse-mounts=0"
  nfs+=("$(secs nfs-cat "$url")")
  if [ "$r" = 1 ]; then # byte-exact (not timed)
    nfs-cat "$url" | cmp - "$img" || { echo "nfs.sh: nfs-cat differs from the image" >&2; exit 1; }
  fi
  stop
done
cold
t_file=$(secs cat "$img")
kernel="not available: this kernel has no NFS server (no nfsd in /proc/filesystems)"
if grep -qw nfsd /proc/filesystems; then
  kernel="available, not scripted yet"
fi

f=$(best "${fuse[@]}") n=$(best "${nfs[@]}")
printf '\nimage: %s (%s bytes); machine: %s cores, load %s at start, %s at end; cold: page cache dropped, fresh server and mount each round\n' \
  "$img" "$size" "$(nproc)" "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)"
row() { printf '%-46s %-20s %8s %8s\n' "$@"; }
row "read of disk-0.raw" "seconds (rounds)" "best" "MB/s"
row "ahvfs nfs-serve, nfs-cat > /dev/null" "${nfs[*]}" "$n" "$(mbps "$size" "$n")"
row "ahvfs mount (FUSE), cat > /dev/null" "${fuse[*]}" "$f" "$(mbps "$size" "$f")"
row "the raw image file, cat > /dev/null (floor)" "$t_file" "$t_file" "$(mbps "$size" "$t_file")"
printf 'kernel NFS export of the image: %s\n' "$kernel"
awk -v n="$n" -v f="$f" 'BEGIN { printf "NFS vs the FUSE mount: %.2fx (target >= 0.8x)\n", f/n }'
