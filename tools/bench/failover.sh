#!/usr/bin/env bash
# Failover benchmark: the time from `ahvfs failover test PLAN` to all the
# plan's VMs powered on, for a plan of 10 VMs in two stages (3, then 7),
# with instant recovery (instant_nfs: disks on the DR repository's NFS
# export, hydrating in the background) and without (every disk written
# in full over iSCSI first), same run; and the instant test failover of
# the same plan with 2 GiB disks, to show its time does not grow with the
# disks' size. Each plan restores a stage's VMs 4 at a time (the default
# `parallel`); the 8 GiB plans run again one VM at a time (parallel = 1)
# to show what restoring side by side gains.
#
#   tools/bench/failover.sh        (SIZE_GIB=8 disks, DATA_GIB=2 of data in each)
#
# Each VM's disk is SIZE_GIB with the first DATA_GIB of a real-file image
# (tools/mkimage) and a hole after it; the ten VMs share the image, so
# the DR repository stays small, but a full restore writes every VM's
# data. The simulated DR cluster (prismsim) runs with its default task
# delay (200 ms QUEUED, 200 ms RUNNING per task) and hydration rate; iSCSI
# through tgtd (root). Each time is the wall time of the command; undo
# runs between them.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${BENCH_OUT:-tools/bench/out}
mkdir -p "$out"
[ "$(id -u)" = 0 ] || { echo "failover.sh: run as root (tgtd)" >&2; exit 1; }
tools/install-deps.sh bench
go build -o bin/ ./cmd/ahvfs ./cmd/prismsim ./tools/mkimage
gib=${SIZE_GIB:-8} data=${DATA_GIB:-2} vms=10
img=$out/failover-${data}g.raw
. tools/bench/lib.sh
bench_work failover
real_image "$img" "$data" 7
load0=$(cut -d' ' -f1-3 /proc/loadavg)

# Two DR repositories: VMs of SIZE_GIB disks, and of DATA_GIB disks (the
# same data without the hole).
cp --sparse=always "$img" "$work/big.raw"
truncate -s "${gib}G" "$work/big.raw"
t=2026-01-01T00:00:00Z
for r in big small; do
  disk=$work/big.raw
  [ "$r" = small ] && disk=$img
  bin/ahvfs init --repo "$work/repo-$r" > /dev/null
  for i in $(seq -w 1 $vms); do
    bin/ahvfs import --repo "$work/repo-$r" --vm "vm$i" --time "$t" "$disk" > /dev/null
  done
done
rm -f "$work/big.raw"

port=$(free_port) iscsi=$(free_port) nfs=$(free_port) nfs2=$(free_port)
start_sim_v42 "$port" "$iscsi"
for s in "big:$nfs" "small:$nfs2"; do
  bin/ahvfs nfs-serve --repo "$work/repo-${s%%:*}" --listen "127.0.0.1:${s#*:}" --portmap off > "$work/nfs-${s%%:*}.log" 2>&1 &
  pids+=($!)
  wait_port "${s#*:}" || { cat "$work/nfs-${s%%:*}.log" >&2; exit 1; }
done

plan() { # NAME REPO PARALLEL [INSTANT_NFS]: writes $work/NAME.toml
  {
    printf 'source_cluster = "dr"\ntarget_cluster = "dr"\ntarget_ahv_cluster = "cluster-a"\n'
    printf 'repository = "%s"\ndata_path = "iscsi"\nparallel = %s\n' "$2" "$3"
    [ -n "${4:-}" ] && printf 'instant_nfs = "%s"\n' "$4"
    printf '[[stage]]\nvms = ["vm01", "vm02", "vm03"]\n[[stage]]\nvms = ["vm*"]\n'
    printf '[[cluster]]\nname = "dr"\nprism = "127.0.0.1:%s"\nuser = "admin"\npassword_file = "%s"\nca_cert = "%s"\napi = "v4"\niscsi_port = %s\n' \
      "$port" "$work/sim/admin.password" "$work/sim/ca.crt" "$iscsi"
  } > "$work/$1.toml"
}
plan ir-big "$work/repo-big" 4 "127.0.0.1:$nfs"
plan ir-small "$work/repo-small" 4 "127.0.0.1:$nfs2"
plan full-big "$work/repo-big" 4
plan ir-big-1 "$work/repo-big" 1 "127.0.0.1:$nfs"
plan full-big-1 "$work/repo-big" 1

declare -A sec
for p in ir-small ir-big full-big ir-big-1 full-big-1; do
  cold
  sec[$p]=$(secs bin/ahvfs failover test "$work/$p.toml")
  bin/ahvfs failover status "$work/$p.toml" | tail -n +2 | sed 's/^/    /'
  bin/ahvfs failover status --json "$work/$p.toml" | jq -e '[.state.vms[].status] | all(. == "on")' > /dev/null ||
    { echo "failover.sh: $p did not bring every VM up" >&2; exit 1; }
  bin/ahvfs failover undo "$work/$p.toml" > /dev/null
done

printf '\nmachine: %s cores, load %s at start, %s at end; prismsim task delay 200 ms\n' \
  "$(nproc)" "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-64s %8s\n' "failover test, $vms VMs in 2 stages, to all powered on" seconds
printf '%-64s %8s\n' "instant recovery, ${data} GiB disks" "${sec[ir-small]}"
printf '%-64s %8s\n' "instant recovery, ${gib} GiB disks (${data} GiB of data)" "${sec[ir-big]}"
printf '%-64s %8s\n' "full restore over iSCSI, ${gib} GiB disks (${data} GiB of data)" "${sec[full-big]}"
printf '%-64s %8s\n' "instant recovery, ${gib} GiB disks, one VM at a time" "${sec[ir-big-1]}"
printf '%-64s %8s\n' "full restore over iSCSI, ${gib} GiB disks, one VM at a time" "${sec[full-big-1]}"
awk -v i="${sec[ir-big]}" -v f="${sec[full-big]}" 'BEGIN { printf "instant recovery brings the plan up %.1fx sooner\n", f / i }'
awk -v s="${sec[ir-big-1]}" -v p="${sec[ir-big]}" -v S="${sec[full-big-1]}" -v P="${sec[full-big]}" \
  'BEGIN { printf "4 VMs at a time: instant recovery %.1fx, full restore %.1fx sooner than one at a time\n", s / p, S / P }'
awk -v a="${sec[ir-small]}" -v b="${sec[ir-big]}" -v g="$gib" -v d="$data" \
  'BEGIN { printf "instant recovery with %s GiB disks takes %.2fx the time of %s GiB disks\n", g, b / a, d }'
