#!/usr/bin/env bash
# Soak test of `ahvfs daemon` (docs/daemon.md): a 1-minute RPO over 20
# simulated VMs for 30 minutes (or $1), with faults injected in turn —
# 429s, 500s, failed snapshot tasks, iSCSI connections cut — and guest
# writes between backups. At the end it checks and prints:
#   - zero lost restore points: every VM backup the history records as ok
#     has its restore point in the repository, and `ahvfs verify` passes;
#   - zero orphaned cluster objects: no volume group, no image, at most one
#     (reference) snapshot per VM;
#   - the daemon's RSS after warm-up and at the end;
#   - every failure visible in `ahvfs jobs` and in /metrics.
# Usage: make build && tools/soak/daemon.sh [DURATION such as 30m] ; AHVFS_SOAK_VMS=20
set -euo pipefail
cd "$(dirname "$0")/../.."
dur=${1:-30m}
case $dur in *m) secs=$(( ${dur%m} * 60 ));; *s) secs=${dur%s};; *) secs=$dur;; esac
nvm=${AHVFS_SOAK_VMS:-20}
root=${AHVFS_SOAK_DIR:-$(mktemp -d /tmp/ahvfs-soak.XXXXXX)}
mkdir -p "$root"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); iscsi=$(free_port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

echo "soak: $nvm VMs, every 1m, for $dur, in $root"
bin/prismsim --listen 127.0.0.1:$port --state "$root/sim" --vms "$nvm" --disk-size 64MiB --task-delay 50ms \
  --iscsi-portal 127.0.0.1:$iscsi --cvm-portal 127.0.0.2:$iscsi --quiet > "$root/prismsim.log" 2>&1 &
pids+=($!)
for _ in $(seq 600); do [ -s "$root/sim/ca.crt" ] && grep -q URL "$root/prismsim.log" && break; sleep 0.1; done
pw=$(cat "$root/sim/admin.password")
sim() { curl -sf --cacert "$root/sim/ca.crt" -u "admin:$pw" "$@"; }
bin/ahvfs init --repo "$root/repo" > /dev/null
cat > "$root/ahvfs.toml" <<CFG
repository = "$root/repo"
concurrency = 2
shutdown_timeout = "2m"
[log]
format = "json"
[http]
listen = "127.0.0.1:0"
[verify]
every_days = 7
[[cluster]]
name = "sim"
prism = "127.0.0.1:$port"
user = "admin"
password_file = "$root/sim/admin.password"
ca_cert = "$root/sim/ca.crt"
iscsi_port = $iscsi
concurrency = 2
[[policy]]
name = "even"
vms = ["*[02468]"]
every = "1m"
rpo = "4m"
concurrent_vms = 4
keep_within = "1d"
[[policy]]
name = "odd"
vms = ["*"]
exclude = ["*[02468]"]
every = "1m"
rpo = "4m"
concurrent_vms = 4
keep_within = "1d"
CFG
bin/ahvfs config check "$root/ahvfs.toml"
bin/ahvfs daemon --config "$root/ahvfs.toml" 2> "$root/daemon.log" > /dev/null &
dpid=$!
pids+=($dpid)
addr=""
for _ in $(seq 600); do
  addr=$(grep -o '"msg":"serving /metrics and /healthz","addr":"[^"]*"' "$root/daemon.log" | sed 's/.*"addr":"//; s/"$//' || true)
  [ -n "$addr" ] && break; sleep 0.1
done
rss() { ps -o rss= -p "$dpid" | tr -d ' '; }
# Each fault lasts 20 s, then 10 s without. Snapshots are v4 recovery
# points or v3/v2 snapshots: fail both kinds of task.
faults=('{"rate_429":0.3}' '{"rate_500":0.2}' '{"fail_tasks":4,"fail_ops":["napshot","ecovery"]}' 'drop' 'write')
start=$(date +%s); i=0; rss_warm=""; rss_log="$root/rss.log"
while [ $(( $(date +%s) - start )) -lt "$secs" ]; do
  f=${faults[$(( i % ${#faults[@]} ))]}; i=$((i+1))
  case $f in
    drop) sim -X POST "https://127.0.0.1:$port/sim/iscsi/drop" > /dev/null || true ;;
    write) for n in $(shuf -i 1-"$nvm" -n 5); do
             f=$(ls "$root"/sim/vms/*/disk-0.raw | sed -n "${n}p")
             [ -n "$f" ] && dd if=/dev/urandom of="$f" bs=1M count=2 seek=$((RANDOM % 60)) conv=notrunc status=none
           done ;;
    *) sim -X PUT -H 'Content-Type: application/json' -d "$f" "https://127.0.0.1:$port/sim/faults" > /dev/null || true ;;
  esac
  sleep 20
  sim -X PUT -H 'Content-Type: application/json' -d '{}' "https://127.0.0.1:$port/sim/faults" > /dev/null || true
  sleep 10
  el=$(( $(date +%s) - start ))
  echo "$el $(rss)" >> "$rss_log"
  if [ -z "$rss_warm" ] && [ "$el" -ge 300 ]; then rss_warm=$(rss); fi
done
sim -X PUT -H 'Content-Type: application/json' -d '{}' "https://127.0.0.1:$port/sim/faults" > /dev/null || true
rss_end=$(rss)
curl -sf "http://$addr/metrics" > "$root/metrics.txt"
kill -TERM "$dpid"; set +e; wait "$dpid"; code=$?; set -e
echo "daemon exit code after SIGTERM: $code"
sleep 2
sim "https://127.0.0.1:$port/sim/inventory?wait=30s" > "$root/inventory.json"
vgs=$(jq '.volume_groups | length' "$root/inventory.json")
imgs=$(jq '.images | length' "$root/inventory.json")
snaps=$(jq '[.snapshots[]?] | length' "$root/inventory.json")
bin/ahvfs jobs --repo "$root/repo" --json > "$root/jobs.json"
bin/ahvfs list --repo "$root/repo" --json > "$root/list.json"
ok_points=$(jq -r '.jobs[] | select(.kind=="backup") | .vms[]? | select(.result=="ok") | .restore_point' "$root/jobs.json" | sort -u)
have=$(jq -r '.[]? // .restore_points[]? | "\(.vm)@\(.time)"' "$root/list.json" 2>/dev/null | sort -u)
lost=$(comm -23 <(echo "$ok_points") <(echo "$have") | grep -c . || true)
jobs=$(jq '[.jobs[] | select(.kind=="backup")] | length' "$root/jobs.json")
bad_jobs=$(jq '[.jobs[] | select(.result!="ok")] | length' "$root/jobs.json")
bad_vms=$(jq '[.jobs[] | select(.kind=="backup") | .vms[]? | select(.result!="ok")] | length' "$root/jobs.json")
ok_vms=$(echo "$ok_points" | grep -c . || true)
m_failed=$(awk '/^ahvfs_jobs_total\{.*result="(failed|partial|cancelled)"/ {s+=$2} END {print s+0}' "$root/metrics.txt")
verify=PASS; bin/ahvfs verify --repo "$root/repo" > "$root/verify.txt" 2>&1 || verify=FAIL
echo "=== soak: $nvm VMs, RPO 1m, $dur, faults: 429s, 500s, failed snapshot tasks, iSCSI drops, guest writes"
echo "backup jobs: $jobs; VM backups ok: $ok_vms; VM backups failed: $bad_vms; jobs not ok: $bad_jobs (metrics: $m_failed)"
echo "restore points: $(echo "$have" | grep -c .); lost (ok in the history, missing in the repository): $lost; verify: $verify"
echo "cluster after stop: volume groups $vgs, images $imgs, snapshots $snaps (one reference per VM: at most $nvm)"
breaches=$(grep -c '"msg":"RPO breached"' "$root/daemon.log" || true)
noncompliant=$(grep -c '^ahvfs_rpo_compliant{.*} 0' "$root/metrics.txt" || true)
echo "RPO (4m) breaches notified: $breaches; VMs out of RPO at the end: $noncompliant"
# RSS: the median of the samples of minutes 5-10, and of the last 5 minutes.
med() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "?"}'; }
rss_early=$(awk '$1 >= 300 && $1 < 600 {print $2}' "$rss_log" | med)
rss_late=$(awk -v e="$(tail -1 "$rss_log" | cut -d' ' -f1)" '$1 > e - 300 {print $2}' "$rss_log" | med)
echo "daemon RSS (median of 30 s samples): minutes 5-10 $rss_early KiB, last 5 minutes $rss_late KiB; at the end $rss_end KiB (samples in $rss_log)"
[ "$lost" = 0 ] && [ "$vgs" = 0 ] && [ "$imgs" = 0 ] && [ "$snaps" -le "$nvm" ] && [ "$verify" = PASS ] && [ "$code" = 0 ]
