#!/bin/bash
# Mount benchmark: ahvfs mount vs restic mount vs a local file, same run.
#
#   sudo tools/bench/mount/run.sh [WORKDIR] [SIZE]      (default /var/tmp/ahvfs-bench-mount, 3GiB)
#
# Builds a real-data ext4 image with mkimage (kept in WORKDIR for later
# runs), stores it in an ahvfs repository and in a restic repository, mounts
# both, and with a cold cache (echo 3 > /proc/sys/vm/drop_caches before
# every step) measures:
#   - streaming disk-0.raw with cat (ahvfs) vs the image through restic mount
#   - qemu-img convert -O qcow2 from the mount vs from the local raw file
#   - random 4 KiB pread latency (p50/p99) on the mount vs the local file
# Needs root, /dev/fuse, restic, qemu-img.
set -euo pipefail
cd "$(dirname "$0")/../../.."
W=${1:-/var/tmp/ahvfs-bench-mount}
SIZE=${2:-3GiB}
mkdir -p "$W"
export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="$W/restic"

go build -o "$W/ahvfs" ./cmd/ahvfs
go build -o "$W/randread" ./tools/bench/mount/randread

IMG="$W/disk-$SIZE.raw"
if [ ! -f "$IMG" ]; then
	echo "== building $SIZE image" >&2
	go run ./tools/mkimage --out "$IMG.tmp" --size "$SIZE"
	mv "$IMG.tmp" "$IMG"
fi
BYTES=$(stat -c %s "$IMG")

if [ ! -d "$W/repo" ]; then
	"$W/ahvfs" init --repo "$W/repo" >/dev/null
	"$W/ahvfs" import --repo "$W/repo" --vm bench --time 2026-01-01T00:00:00Z "$IMG" >/dev/null
fi
if [ ! -d "$RESTIC_REPOSITORY" ]; then
	restic init -q
	(cd "$W" && restic backup -q "$(basename "$IMG")")
fi

AM="$W/mnt-ahvfs" RM="$W/mnt-restic"
mkdir -p "$AM" "$RM"
cleanup() {
	[ -n "${APID:-}" ] && kill -TERM "$APID" 2>/dev/null && wait "$APID" 2>/dev/null || true
	[ -n "${RPID:-}" ] && kill -TERM "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null || true
	umount -l "$AM" 2>/dev/null || true
	umount -l "$RM" 2>/dev/null || true
}
trap cleanup EXIT
"$W/ahvfs" mount --repo "$W/repo" "$AM" >/dev/null 2>"$W/ahvfs-mount.log" & APID=$!
restic mount -q "$RM" >/dev/null 2>&1 & RPID=$!
ARAW="$AM/bench/latest/disk-0.raw"
for i in $(seq 100); do
	[ -f "$ARAW" ] && ls "$RM/snapshots/latest/" >/dev/null 2>&1 && break
	sleep 0.2
done
RRAW=$(find "$RM/snapshots/latest/" -name "$(basename "$IMG")" | head -1)

cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# secs CMD...: wall-clock seconds of CMD
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
mbps() { echo "scale=0; $BYTES / $1 / 1000000" | bc -l; }

cold; T_AHVFS=$(secs cat "$ARAW")
cold; T_RESTIC=$(secs cat "$RRAW")
cold; T_LOCAL=$(secs cat "$IMG")
cold; T_QA=$(secs qemu-img convert -f raw -O qcow2 "$ARAW" "$W/out-mount.qcow2")
cold; T_QL=$(secs qemu-img convert -f raw -O qcow2 "$IMG" "$W/out-local.qcow2")
qemu-img compare -q "$W/out-mount.qcow2" "$IMG" || { echo "qemu-img compare: differs" >&2; exit 1; }
rm -f "$W/out-mount.qcow2" "$W/out-local.qcow2"
cold; R_AHVFS=$("$W/randread" -n 2000 "$ARAW")
cold; R_RESTIC=$("$W/randread" -n 500 "$RRAW")
cold; R_LOCAL=$("$W/randread" -n 2000 "$IMG")

printf '\nimage: %s (%s bytes), %s cores, cold cache before every step\n\n' "$SIZE" "$BYTES" "$(nproc)"
printf '%-34s %12s %12s %12s\n' "" "ahvfs mount" "restic mount" "local file"
printf '%-34s %9.2f s  %9.2f s  %9.2f s\n' "cat disk image (time)" "$T_AHVFS" "$T_RESTIC" "$T_LOCAL"
printf '%-34s %7s MB/s %7s MB/s %7s MB/s\n' "cat disk image (throughput)" "$(mbps "$T_AHVFS")" "$(mbps "$T_RESTIC")" "$(mbps "$T_LOCAL")"
printf '%-34s %9.2f s  %12s %9.2f s\n' "qemu-img convert -O qcow2" "$T_QA" "-" "$T_QL"
printf '%-34s %12s %12s %12s\n' "random 4 KiB pread p50 (us)" \
	"$(sed 's/.*p50_us=\([0-9]*\).*/\1/' <<<"$R_AHVFS")" "$(sed 's/.*p50_us=\([0-9]*\).*/\1/' <<<"$R_RESTIC")" "$(sed 's/.*p50_us=\([0-9]*\).*/\1/' <<<"$R_LOCAL")"
printf '%-34s %12s %12s %12s\n' "random 4 KiB pread p99 (us)" \
	"$(sed 's/.*p99_us=\([0-9]*\).*/\1/' <<<"$R_AHVFS")" "$(sed 's/.*p99_us=\([0-9]*\).*/\1/' <<<"$R_RESTIC")" "$(sed 's/.*p99_us=\([0-9]*\).*/\1/' <<<"$R_LOCAL")"
printf '\nahvfs vs restic (cat): %.1fx faster; qemu-img convert mount/local: %.2fx\n' \
	"$(echo "$T_RESTIC / $T_AHVFS" | bc -l)" "$(echo "$T_QA / $T_QL" | bc -l)"
