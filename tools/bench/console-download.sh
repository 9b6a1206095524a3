#!/usr/bin/env bash
# Console download benchmark: one 4 GiB guest file of a restore point
# downloaded through the daemon's web console API (`ahvfs daemon`, GET
# /api/v1/vms/{vm}/points/{time}/download/disk-0/part-0/big.bin with an
# admin's API token, curl -o FILE) beside `ahvfs restore-file` of the same
# file from the same repository, same run, and the daemon's peak RSS while
# it serves the download. Target: the console >= 0.7x restore-file, RSS
# bounded (not growing with the file).
#
#   tools/bench/console-download.sh   (root; SIZE_MIB=4096 the guest file,
#                                      ROUNDS=3, BENCH_DIR=DIR for the scratch
#                                      data, about 3x the file free; KEEP=1 keeps it)
#
# The guest: an ext4 filesystem (no partition table: disk-0/part-0) of the
# file's size plus 1 GiB, holding big.bin (AES-128-CTR keystream of a fixed
# key: incompressible) and a few small files, imported as a restore point of
# VM "bench" (ahvfs import). The daemon's console lists only the VMs its
# policies have backed up, so prismsim plays a cluster with a 64 MiB VM
# "bench" that a policy backs up once at the daemon's start; the download
# then reads the imported point. The console listens on loopback without
# TLS (its configuration allows plain HTTP there only).
#
# Each round, page cache dropped before every timed step (sync; echo 3 >
# drop_caches), the order alternating between rounds: curl of the file to
# a file in the scratch directory, restore-file --to that directory, and
# curl to /dev/null (the console's read side alone). Output files are
# removed after each step; the first round checks both against the
# source's SHA-256. The daemon's peak RSS is its VmHWM over each download,
# reset before it (echo 5 > /proc/PID/clear_refs); its CPU seconds are
# from /proc/PID/stat, the clients' from time(1). Medians of the rounds.
# The commit printed is `git rev-parse --short HEAD` (COMMIT=... when run
# from a copy without .git).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "console-download.sh: run as root (tgtd for the simulated cluster, drop_caches, clear_refs)" >&2; exit 1; }
tools/install-deps.sh bench
for t in curl jq openssl mkfs.ext4 python3 sha256sum; do
  command -v "$t" > /dev/null || { echo "console-download.sh: needs $t" >&2; exit 1; }
done
go build -o bin/ ./cmd/ahvfs ./cmd/prismsim
out=${BENCH_DIR:-${BENCH_OUT:-tools/bench/out}}
mkdir -p "$out"
. tools/bench/lib.sh
bench_work console
mib=${SIZE_MIB:-4096}
rounds=${ROUNDS:-3}
size=$((mib << 20))
free_kb=$(df -Pk "$work" | awk 'NR == 2 { print $4 }')
if [ "$free_kb" -lt $((3 * size / 1024 + (2 << 20))) ]; then
  echo "console-download.sh: $work has $((free_kb >> 20)) GiB free; about $((3 * mib / 1024 + 2)) GiB needed (BENCH_DIR=DIR elsewhere)" >&2
  exit 1
fi
load0=$(cut -d' ' -f1-3 /proc/loadavg)

# The guest filesystem and its restore point (not timed).
echo "building a $((mib + 1024)) MiB ext4 image with a $mib MiB incompressible file ..." >&2
mkdir -p "$work/guest/etc" "$work/guest/notes"
head -c "$size" /dev/zero | openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f -iv 00000000000000000000000000000000 > "$work/guest/big.bin"
cp /etc/os-release /etc/hostname "$work/guest/etc/" 2> /dev/null || true
seq 1 100000 > "$work/guest/notes/seq.txt"
echo "console download benchmark" > "$work/guest/README"
sum=$(sha256sum < "$work/guest/big.bin" | cut -d' ' -f1)
mkfs.ext4 -q -F -L bench -d "$work/guest" "$work/disk.raw" "$((mib + 1024))M" > /dev/null
rm -rf "$work/guest"
export AHVFS_REPO=$work/repo
t=2026-01-01T00:00:00Z
bin/ahvfs init > /dev/null
bin/ahvfs import --vm bench --time "$t" "$work/disk.raw" > /dev/null
rm -f "$work/disk.raw"
repo_bytes=$(du_b "$work/repo")

# The cluster (a 64 MiB VM "bench"), a console user and the daemon.
truncate -s 64M "$work/vm.raw"
mkfs.ext4 -q -F "$work/vm.raw"
port=$(free_port) iscsi=$(free_port) hport=$(free_port)
bin/prismsim --listen "127.0.0.1:$port" --state "$work/sim" --vms 0 --vm "bench:$work/vm.raw" --task-delay 50ms \
  --iscsi-portal "127.0.0.1:$iscsi" --cvm-portal "127.0.0.2:$iscsi" --quiet > "$work/sim.log" 2>&1 &
pids+=($!)
wait_port "$port" || { cat "$work/sim.log" >&2; exit 1; }
for _ in $(seq 100); do [ -s "$work/sim/ca.crt" ] && break; sleep 0.1; done
printf 'bench console password\n' > "$work/console.pw"
bin/ahvfs user add bench --role admin --password-file "$work/console.pw" --users "$work/users.json" > /dev/null
token=$(bin/ahvfs user token bench --users "$work/users.json" 2> /dev/null)
cat > "$work/ahvfs.toml" << CFG
repository = "$work/repo"
shutdown_timeout = "30s"
[log]
format = "json"
[http]
listen = "127.0.0.1:$hport"
users = "$work/users.json"
[[cluster]]
name = "sim"
prism = "127.0.0.1:$port"
user = "admin"
password_file = "$work/sim/admin.password"
ca_cert = "$work/sim/ca.crt"
iscsi_port = $iscsi
[[policy]]
name = "bench"
vms = ["bench"]
every = "24h"
CFG
bin/ahvfs config check "$work/ahvfs.toml" > /dev/null
bin/ahvfs daemon --config "$work/ahvfs.toml" > /dev/null 2> "$work/daemon.log" &
daemon=$!
pids+=("$daemon")
wait_port "$hport" || { cat "$work/daemon.log" >&2; exit 1; }
api=http://127.0.0.1:$hport/api/v1
auth=(-H "Authorization: Bearer $token")
for _ in $(seq 600); do # the policy's first backup puts "bench" on the dashboard
  [ -n "$(curl -sS "${auth[@]}" "$api/vms" | jq -r '.vms[]? | select(.name == "bench") | .last_result // empty')" ] && break
  kill -0 "$daemon" 2> /dev/null || { cat "$work/daemon.log" >&2; exit 1; }
  sleep 0.2
done
part=$(curl -sS -f "${auth[@]}" "$api/vms/bench/points/$t/files/disk-0" | jq -r '[.entries[] | select(.type == "dir") | .name][0]')
got=$(curl -sS -f "${auth[@]}" "$api/vms/bench/points/$t/files/disk-0/$part/big.bin" | jq -r .entry.size)
[ "$got" = "$size" ] || { echo "console-download.sh: the console lists big.bin with size $got, want $size" >&2; exit 1; }
url=$api/vms/bench/points/$t/download/disk-0/$part/big.bin

# ticks: the daemon's user+system CPU clock ticks so far; kib FIELD: a
# VmXXX field of its /proc status, KiB.
ticks() { awk '{ print $14 + $15 }' "/proc/$daemon/stat"; }
kib() { awk -v k="$1" '$1 == k ":" { print $2 }' "/proc/$daemon/status"; }
# timed CMD...: $e, its wall seconds; $m, its peak RSS (KiB); $u, its CPU
# seconds (user+system).
timed() {
  local us ss
  /usr/bin/time -f "%e %M %U %S" -o "$work/time" "$@" > /dev/null
  read -r e m us ss < "$work/time"
  u=$(awk -v a="$us" -v b="$ss" 'BEGIN { printf "%.2f", a + b }')
}
check() { # FILE: the source's bytes (the first round hashes them)
  local s
  s=$(stat -c %s "$1")
  [ "$s" = "$size" ] || { echo "console-download.sh: $1 has $s bytes, want $size" >&2; exit 1; }
  if [ "$r" = 1 ]; then
    [ "$(sha256sum < "$1" | cut -d' ' -f1)" = "$sum" ] || { echo "console-download.sh: $1 differs from the source" >&2; exit 1; }
  fi
}
console() { # TARGET: curl's $e and $u; $h, the daemon's peak RSS (KiB) and $c, its CPU seconds meanwhile
  local c0
  cold
  echo 5 > "/proc/$daemon/clear_refs" # VmHWM := VmRSS
  c0=$(ticks)
  timed curl -sS -f "${auth[@]}" -o "$1" "$url"
  h=$(kib VmHWM)
  c=$(awk -v a="$c0" -v b="$(ticks)" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz }')
}
declare -a t_con t_rf t_null hwm cpu_d cpu_curl cpu_rf rss_rf
rss0=$(kib VmRSS)
mkdir -p "$work/to"
for r in $(seq "$rounds"); do
  steps=(file rf null)
  [ $((r % 2)) = 1 ] || steps=(rf null file)
  for step in "${steps[@]}"; do
    case $step in
    file)
      console "$work/to/big.bin"
      check "$work/to/big.bin"
      rm -f "$work/to/big.bin"
      t_con+=("$e") hwm+=("$h") cpu_d+=("$c") cpu_curl+=("$u")
      ;;
    null)
      console /dev/null
      t_null+=("$e") hwm+=("$h")
      ;;
    rf)
      cold
      timed bin/ahvfs restore-file "bench@$t" "disk-0/$part/big.bin" --to "$work/to"
      check "$work/to/big.bin"
      rm -f "$work/to/big.bin"
      t_rf+=("$e") cpu_rf+=("$u") rss_rf+=("$m")
      ;;
    esac
  done
done
rss1=$(kib VmRSS)

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
mib_list() { for k in "$@"; do printf '%s ' "$((k / 1024))"; done | sed 's/ $//'; }
mc=$(median "${t_con[@]}") mr=$(median "${t_rf[@]}") mn=$(median "${t_null[@]}")
maxh=$(printf '%s\n' "${hwm[@]}" | sort -n | tail -1)
printf '\nguest file: %s bytes (incompressible) in a %s MiB ext4 image; repository %s bytes; commit %s; machine: %s cores, %s GiB RAM, load %s at start, %s at end; page cache dropped before each step\n' \
  "$size" "$((mib + 1024))" "$repo_bytes" "${COMMIT:-$(git rev-parse --short HEAD 2> /dev/null || echo '?')}" "$(nproc)" \
  "$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)" "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)"
row() { printf '%-44s %-22s %7s %6s  %s\n' "$@"; }
row "read of big.bin" "seconds (rounds)" "median" "MB/s" "CPU seconds (rounds)"
row "console download, curl -o FILE" "${t_con[*]}" "$mc" "$(mbps "$size" "$mc")" "daemon ${cpu_d[*]}; curl ${cpu_curl[*]}"
row "ahvfs restore-file --to DIR (same disk)" "${t_rf[*]}" "$mr" "$(mbps "$size" "$mr")" "${cpu_rf[*]}"
row "console download, curl -o /dev/null" "${t_null[*]}" "$mn" "$(mbps "$size" "$mn")" ""
printf 'daemon RSS: %s MiB before the downloads, %s MiB after; peak (VmHWM) over each download, in order: %s MiB\n' \
  "$((rss0 / 1024))" "$((rss1 / 1024))" "$(mib_list "${hwm[@]}")"
printf 'restore-file peak RSS: %s MiB\n' "$(mib_list "${rss_rf[@]}")"
awk -v c="$mc" -v r="$mr" -v h="$maxh" -v m="$mib" 'BEGIN {
  printf "console vs restore-file: %.2fx (target >= 0.7x: %s); daemon peak RSS %.0f MiB for a %d MiB file (%s)\n",
    r / c, (r / c >= 0.7 ? "met" : "NOT met"), h / 1024, m, (h / 1024 < 512 ? "under 512 MiB" : "over 512 MiB") }'
