#!/usr/bin/env bash
# Instant recovery benchmark: time to a powered-on VM with `ahvfs
# instant-restore` (disks on the repository's NFS export, a v4.2 external
# repository, hydration in the background) beside a full `ahvfs restore`
# over iSCSI of the same 8 GiB disk, same run; and instant restores of a
# 2 GiB and a 100 GiB (sparse) restore point, which should take the same
# time whatever the size (target: powered on within 5 s).
#
#   tools/bench/instant.sh            (SIZE_GIB=8 for the compared disk)
#
# The simulated cluster (prismsim) runs with its default task delay
# (200 ms in QUEUED, then 200 ms RUNNING, per task), iSCSI through tgtd
# (root), and hydrates at its default 256 MiB/s. Each time is the wall
# time of the command, from start until it returns with the VM powered on.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${BENCH_OUT:-tools/bench/out}
mkdir -p "$out"
[ "$(id -u)" = 0 ] || { echo "instant.sh: run as root (tgtd)" >&2; exit 1; }
tools/install-deps.sh bench
go build -o bin/ ./cmd/ahvfs ./cmd/prismsim ./tools/mkimage
gib=${SIZE_GIB:-8}
img=$out/instant-${gib}g.raw
. tools/bench/lib.sh
bench_work instant
real_image "$img" "$gib" 5
load0=$(cut -d' ' -f1-3 /proc/loadavg)

# Restore points: the compared disk, 2 GiB of it, and 100 GiB with 64 MiB
# of data at its start (the rest a hole).
head -c $((2 << 30)) "$img" > "$work/2g.raw"
truncate -s 100G "$work/100g.raw"
dd if="$img" of="$work/100g.raw" bs=1M count=64 conv=notrunc status=none
export AHVFS_REPO=$work/repo
bin/ahvfs init > /dev/null
t=2026-01-01T00:00:00Z
for v in "big:$img" "small:$work/2g.raw" "sparse:$work/100g.raw"; do
  bin/ahvfs import --vm "${v%%:*}" --time "$t" "${v#*:}" > /dev/null
done
rm -f "$work/2g.raw" "$work/100g.raw"

port=$(free_port) iscsi=$(free_port) nfs=$(free_port)
start_sim_v42 "$port" "$iscsi"
bin/ahvfs nfs-serve --listen 127.0.0.1:$nfs --portmap off > "$work/nfs.log" 2>&1 &
pids+=($!)
wait_port "$nfs" || { cat "$work/nfs.log" >&2; exit 1; }
export AHVFS_PRISM=127.0.0.1:$port AHVFS_USER=admin AHVFS_PASSWORD_FILE=$work/sim/admin.password
site=(--ca-cert "$work/sim/ca.crt")

instant() { # VM NAME: seconds to a powered-on VM
  secs bin/ahvfs instant-restore "$1@$t" "${site[@]}" --nfs 127.0.0.1:$nfs --target-cluster cluster-a --name "$2" --power-on
}
declare -A sec
for v in small sparse big; do
  sec[$v]=$(instant "$v" "$v-ir")
  bin/ahvfs instant-restore status "$v-ir" "${site[@]}" | sed 's/^/    /'
  bin/ahvfs instant-restore cancel "$v-ir" "${site[@]}" > /dev/null
done
cold
full=$(secs bin/ahvfs restore "big@$t" "${site[@]}" --iscsi-port "$iscsi" --data-path iscsi --target-cluster cluster-a --name big-full --power-on)

printf '\nmachine: %s cores, load %s at start, %s at end; prismsim task delay 200 ms, hydration 256 MiB/s\n' \
  "$(nproc)" "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-52s %8s\n' "to a powered-on VM" seconds
printf '%-52s %8s\n' "instant-restore, 2 GiB restore point" "${sec[small]}"
printf '%-52s %8s\n' "instant-restore, 100 GiB (sparse) restore point" "${sec[sparse]}"
printf '%-52s %8s\n' "instant-restore, ${gib} GiB (real data)" "${sec[big]}"
printf '%-52s %8s\n' "restore (iSCSI, every byte written first), ${gib} GiB" "$full"
awk -v i="${sec[big]}" -v f="$full" 'BEGIN { printf "instant is %.1fx sooner than a full restore of %s\n", f / i, "the same disk" }'
for v in small sparse; do
  awk -v s="${sec[$v]}" -v n="$v" 'BEGIN { printf "%s: %s (target: powered on within 5 s)\n", n, (s <= 5 ? "met" : "NOT met") }'
done
