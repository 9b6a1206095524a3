# Shared helpers of the benchmark scripts (sourced; the caller sets $work,
# a scratch directory, before timing anything).

# secs CMD...: wall seconds of CMD, its stdout discarded; its peak RSS
# (KiB) is left in $work/rss.
secs() {
  /usr/bin/time -f "%e %M" -o "$work/time" "$@" > /dev/null
  local s rss
  read -r s rss < "$work/time"
  echo "$rss" > "$work/rss"
  echo "$s"
}

# secs_to OUT CMD...: secs, CMD's stdout into OUT.
secs_to() {
  /usr/bin/time -f "%e %M" -o "$work/time" "${@:2}" > "$1"
  local s rss
  read -r s rss < "$work/time"
  echo "$rss" > "$work/rss"
  echo "$s"
}

# mbps BYTES SECONDS: decimal megabytes per second, rounded.
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.0f", b / s / 1e6 }'; }

# du_b DIR: bytes under DIR.
du_b() { du -sb "$1" | cut -f1; }

# best N...: the smallest.
best() { printf '%s\n' "$@" | sort -n | head -1; }

# cold: dirty pages written back, and the page cache dropped when root.
cold() {
  sync
  if [ "$(id -u)" = 0 ]; then echo 3 > /proc/sys/vm/drop_caches; fi
}

# free_port: a TCP port free on 127.0.0.1 now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s at most;
# 1 when nothing does).
wait_port() {
  local _
  for _ in $(seq 100); do
    (echo > "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0
    sleep 0.1
  done
  return 1
}

# real_image PATH GIB SEED: a GiB image of real files (tools/mkimage, 70%
# full) at PATH, built once and kept for later runs.
real_image() {
  [ -f "$1" ] && return 0
  echo "building $1 (real files, 70% full) ..." >&2
  bin/mkimage --out "$1.tmp" --size "$2GiB" --seed "$3"
  mv "$1.tmp" "$1"
}

# start_sim_v42 PORT ISCSI: prismsim with the v4.2 APIs in $work/sim on
# 127.0.0.1:PORT, its iSCSI portal on ISCSI (tgtd), no VMs; its PID joins
# $pids. It returns once the simulator serves and its CA is written.
start_sim_v42() {
  bin/prismsim --listen "127.0.0.1:$1" --state "$work/sim" --vms 0 --v4-revisions v4.0,v4.1,v4.2 \
    --iscsi-portal "127.0.0.1:$2" --cvm-portal "127.0.0.2:$2" --quiet > "$work/sim.log" 2>&1 &
  pids+=($!)
  wait_port "$1" || { cat "$work/sim.log" >&2; exit 1; }
  for _ in $(seq 100); do [ -s "$work/sim/ca.crt" ] && break; sleep 0.1; done
}

# bench_work NAME: $work, a new scratch directory $out/NAME-XXXX; at exit
# the processes whose PIDs are in $pids are stopped and $work is removed
# (kept when KEEP is set).
bench_work() {
  work=$(realpath "$(mktemp -d "$out/$1-XXXX")")
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; wait "$p" 2> /dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
