#!/usr/bin/env bash
# make demo: the main job end to end on the built-in Prism simulator.
# prismsim plays a Prism Central with two clusters and VMs whose disks hold
# real ext4 filesystems, exported over a real iSCSI target (tgtd) behind a
# Data-Services-IP login redirect. ahvfs backs them up (full), the "guest"
# writes, ahvfs backs up again (incremental: only changed regions are read),
# then lists, verifies, deletes the index and rebuilds it with `ahvfs repair
# index`, and restores one VM to the second cluster. It then
# kills a restore with SIGKILL halfway and shows `ahvfs cleanup` removing
# exactly what it left (the journal of temporary cluster objects), ages
# restore points out, shares an S3 repository between two backup hosts, and
# replicates the repository to a DR site over mutual TLS (ahvfs serve,
# ahvfs sync) and restores from the DR copy. Last, it exports the restore
# points over NFSv3 (ahvfs nfs-serve) and reads one with qemu-img's nfs://
# driver and libnfs, given only the host, and runs a VM from that export at
# once (instant-restore: a v4.2 external repository, hydrated in the
# background by the simulated cluster), copies a file the guest lost straight
# back into it (restore-file --to-vm). Last, verify-boot boots a backed-up
# guest in QEMU and reports its login prompt, then catches a backup whose
# kernel was deleted. Last, xapisim plays an XCP-ng pool: its VM is backed
# up into the same repository with changed-block tracking over NBD and with
# XVA and delta VHDs, restored onto the pool, and restore points cross
# between AHV and XCP-ng both ways.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=${DEMO_DIR:-$PWD/demo}
port=${DEMO_PORT:-19440}
iscsi=${DEMO_ISCSI_PORT:-13260}
rm -rf "$demo"; mkdir -p "$demo"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "starting the Prism simulator (2 VMs with real ext4 disks, iSCSI via tgtd)"
bin/prismsim --listen 127.0.0.1:$port --state "$demo/sim" --vms 2 --disk-size 512MiB \
  --v4-revisions v4.0,v4.1,v4.2,v4.3 --hydration-rate 128MiB --iscsi-portal 127.0.0.1:$iscsi --cvm-portal 127.0.0.2:$iscsi --quiet > "$demo/prismsim.log" 2>&1 &
sim=$!
trap 'rc=$?; kill $sim 2>/dev/null; wait $sim 2>/dev/null || true; exit $rc' EXIT
for _ in $(seq 1 600); do
  [ -s "$demo/sim/ca.crt" ] && grep -q "iSCSI\|portal\|URL" "$demo/prismsim.log" 2>/dev/null && break
  kill -0 $sim 2>/dev/null || { cat "$demo/prismsim.log"; exit 1; }
  sleep 0.5
done
cat "$demo/prismsim.log"

export AHVFS_REPO="$demo/repo" AHVFS_PRISM=127.0.0.1:$port AHVFS_USER=admin
export AHVFS_PASSWORD_FILE="$demo/sim/admin.password"
cluster=(--ca-cert "$demo/sim/ca.crt" --iscsi-port $iscsi)

say "ahvfs health-check"
bin/ahvfs health-check "${cluster[@]}"

say "ahvfs vms"
bin/ahvfs vms --ca-cert "$demo/sim/ca.crt"

say "ahvfs init"
bin/ahvfs init

say "ahvfs backup (full: the allocation map, read over iSCSI)"
bin/ahvfs backup "${cluster[@]}" --consistency app

say "the guest writes 16 MiB of real data into its disk"
vm=$(ls "$demo/sim/vms" | head -1) vm2=$(ls "$demo/sim/vms" | sed -n 2p)
dd if=/usr/local/go/bin/go of="$demo/sim/vms/$vm/disk-0.raw" bs=1M count=16 seek=200 conv=notrunc status=none

say "ahvfs backup (incremental: only the changed regions are read)"
bin/ahvfs backup "${cluster[@]}" --consistency app

say "ahvfs list"
bin/ahvfs list

say "the latest restore point equals the live disk"
bin/ahvfs cat "$vm@latest" disk-0 | cmp - "$demo/sim/vms/$vm/disk-0.raw" && echo identical

say "ahvfs verify --read-data"
bin/ahvfs verify --read-data

say "the index is a cache: delete it and the readers' checkpoints; 'ahvfs repair index' rebuilds both from the packs and the record files"
echo "one immutable record file per restore point:"
ls "$AHVFS_REPO"/records/rp | sed 's/^/  /'
rm -rf "$AHVFS_REPO/index" "$AHVFS_REPO/snapshots"
bin/ahvfs list 2>&1 | sed 's/^/  /' || true
bin/ahvfs repair index
bin/ahvfs list
bin/ahvfs cat "$vm@latest" disk-0 | cmp - "$demo/sim/vms/$vm/disk-0.raw" && echo "the latest restore point still equals the live disk"

say "ahvfs restore to cluster-b with the network remapped"
bin/ahvfs restore "$vm@latest" "${cluster[@]}" --target-cluster cluster-b --name "$vm-dr" --network-map vlan10=vlan20 --power-on
cmp "$demo/sim/vms/$vm-dr/disk-0.raw" "$demo/sim/vms/$vm/disk-0.raw" && echo "restored disk identical"

say "ahvfs backup --level copy (a full outside the chain: the reference snapshot stays as it was)"
bin/ahvfs backup "${cluster[@]}" --vm "$vm" --level copy

inventory() {
  curl -s --cacert "$demo/sim/ca.crt" -u "admin:$(cat "$demo/sim/admin.password")" "https://127.0.0.1:$port/sim/inventory?wait=10s" |
    jq -r '"  \(.vms|length) VMs, \(.snapshots|length) snapshots, \(.images|length) images, volume groups: \(
      [.volume_groups[] | "\(.name) (\(.clients // [] | length) attached)"] | if length == 0 then "none" else join(", ") end)"'
}
say "a restore killed with SIGKILL while it writes its disks (--bwlimit 32MiB/s keeps it slow)"
inventory
bin/ahvfs restore "$vm@latest" "${cluster[@]}" --name "$vm-killed" --bwlimit 32MiB/s &
restore=$!
sleep 4
kill -9 $restore; wait $restore 2>/dev/null || true
echo "killed; the cluster now holds what the restore had made:"
inventory
echo "and the repository's journal holds the killed job (kept/ is the reference snapshots backups keep):"
ls "$AHVFS_REPO"/journal/ | sed 's/^/  /'

say "ahvfs cleanup: the journal names what the killed job left; cleanup removes exactly that"
bin/ahvfs cleanup --ca-cert "$demo/sim/ca.crt"
inventory

say "retention: lock the first restore point for 30 days; forget refuses it; prune keeps the newest per VM and the locked one"
first=$(bin/ahvfs list --json | jq -r '.[0].name')
bin/ahvfs lock "$first" --for 30d
bin/ahvfs forget "$first" 2>&1 | sed 's/^/  /' || true
bin/ahvfs prune --keep-last 1
bin/ahvfs list
bin/ahvfs verify --read-data

say "a backup after its reference's restore point was pruned: a full that says why"
bin/ahvfs backup "${cluster[@]}" --vm "$vm"

say "the guest overwrites those 16 MiB; a backup; prune to the newest point per VM (and the locked one); gc reclaims what only the pruned points held"
dd if=/dev/urandom of="$demo/sim/vms/$vm/disk-0.raw" bs=1M count=16 seek=200 conv=notrunc status=none
bin/ahvfs backup "${cluster[@]}" --vm "$vm" > /dev/null
bin/ahvfs prune --keep-last 1
bin/ahvfs stats | grep -E 'referenced|reclaim'
bin/ahvfs gc
bin/ahvfs verify --read-data
bin/ahvfs cat "$vm@latest" disk-0 | cmp - "$demo/sim/vms/$vm/disk-0.raw" && echo "the latest restore point still equals the live disk"

say "object storage: a repository in an S3 bucket (versitygw on loopback), shared by two backup hosts"
vgw=${AHVFS_VERSITYGW:-${AHVFS_TOOLS_DIR:-$HOME/.cache/ahvfs-tools}/versitygw-v1.8.0/versitygw}
s3port=${DEMO_S3_PORT:-17071}
mkdir -p "$demo/s3"
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demo-secret-$RANDOM$RANDOM
ROOT_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID ROOT_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
  "$vgw" --port 127.0.0.1:$s3port --quiet --keep-alive posix "$demo/s3" > "$demo/versitygw.log" 2>&1 &
gw=$!
trap 'rc=$?; kill $sim $gw 2>/dev/null; wait $sim $gw 2>/dev/null || true; exit $rc' EXIT
for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/$s3port) 2>/dev/null && break; sleep 0.1; done
hostA=(--repo s3://ahvfs-demo/site-a --s3-endpoint http://127.0.0.1:$s3port --cache-dir "$demo/cache-host-a" --state-dir "$demo/state-host-a")
hostB=(--repo s3://ahvfs-demo/site-a --s3-endpoint http://127.0.0.1:$s3port --cache-dir "$demo/cache-host-b" --state-dir "$demo/state-host-b")
bin/ahvfs init "${hostA[@]}" --s3-object-lock
echo "host A backs up $vm, host B the other VM, at the same time:"
other=$(ls "$demo/sim/vms" | grep -v -e "^$vm\$" -e -dr -e -killed | head -1)
bin/ahvfs backup "${cluster[@]}" "${hostA[@]}" --vm "$vm" > /dev/null &
a=$!
bin/ahvfs backup "${cluster[@]}" "${hostB[@]}" --vm "$other" > /dev/null
wait $a
echo "each host sees both restore points:"
bin/ahvfs list "${hostB[@]}"
bin/ahvfs cat "$vm@latest" disk-0 "${hostB[@]}" | cmp - "$demo/sim/vms/$vm/disk-0.raw" && echo "host B reads host A's backup of $vm: identical to the live disk"
say "lock it for 7 days: the bucket's object lock now refuses to delete what it needs, even to the store's own users"
bin/ahvfs lock "$vm@latest" --for 7d "${hostA[@]}"
say "delete host B's cache: it is rebuilt from the bucket"
rm -rf "$demo/cache-host-b"
bin/ahvfs verify --read-data "${hostB[@]}"
say "ahvfs repo check"
bin/ahvfs repo check "${hostA[@]}"
grep -rl "$AWS_SECRET_ACCESS_KEY" "$demo/s3" "$demo/cache-host-a" "$demo/cache-host-b" 2>/dev/null && { echo "the secret key was stored"; exit 1; }
echo "the secret key is in no object and no cache file"

say "DR site: a repository made with --copy-params-from (same chunk IDs and keys), served over mutual TLS, append-only"
dr="$demo/dr-site"; mkdir -p "$dr"
# A CA for the two sites, a server certificate for the DR site and a client
# certificate for this one (openssl; an administrator uses the site's PKI).
cert() { # name usage [san]
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dr/$1.key" -out "$dr/$1.csr" -subj "/CN=$1" 2>/dev/null
  printf 'extendedKeyUsage=%s\n%s' "$2" "${3:+subjectAltName=$3}" > "$dr/$1.ext"
  openssl x509 -req -in "$dr/$1.csr" -CA "$dr/ca.crt" -CAkey "$dr/ca.key" -CAcreateserial -days 2 -out "$dr/$1.crt" -extfile "$dr/$1.ext" 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$dr/ca.key" -out "$dr/ca.crt" -subj /CN=ahvfs-demo-sites -days 2 2>/dev/null
cert dr-site serverAuth IP:127.0.0.1
cert prod-site clientAuth
bin/ahvfs init --repo "$dr/repo" --copy-params-from "$AHVFS_REPO"
drport=${DEMO_DR_PORT:-17443}
bin/ahvfs serve --repo "$dr/repo" --listen 127.0.0.1:$drport --tls-cert "$dr/dr-site.crt" --tls-key "$dr/dr-site.key" \
  --client-ca "$dr/ca.crt" --append-only > "$dr/serve.log" 2>&1 &
srv=$!
trap 'rc=$?; kill $sim $gw $srv 2>/dev/null; wait $sim $gw $srv 2>/dev/null || true; exit $rc' EXIT
for _ in $(seq 1 100); do grep -q "serving" "$dr/serve.log" && break; sleep 0.1; done
cat "$dr/serve.log"
peer=(--tls-cert "$dr/prod-site.crt" --tls-key "$dr/prod-site.key" --ca-cert "$dr/ca.crt")

say "ahvfs sync --to the DR site: manifest pages first, then only the chunks the target lacks"
bin/ahvfs sync --to https://127.0.0.1:$drport "${peer[@]}"
bin/ahvfs list --repo "$dr/repo"

say "the guest writes again; a backup; the next sync sends about what the backup stored"
dd if=/dev/urandom of="$demo/sim/vms/$vm/disk-0.raw" bs=1M count=8 seek=300 conv=notrunc status=none
bin/ahvfs backup "${cluster[@]}" --vm "$vm"
bin/ahvfs sync --to https://127.0.0.1:$drport "${peer[@]}" --json | jq -c '{synced, already_there, chunks_sent, bytes_sent, seconds}'

say "append-only: this site cannot delete the DR copy, even with valid credentials"
bin/ahvfs forget --repo https://127.0.0.1:$drport "${peer[@]}" "$vm@latest" 2>&1 | sed 's/^/  /' || true
bin/ahvfs gc --repo https://127.0.0.1:$drport "${peer[@]}" 2>&1 | sed 's/^/  /' || true
echo "(what gc would reclaim there may still be asked: gc --dry-run through the server)"
bin/ahvfs gc --repo https://127.0.0.1:$drport "${peer[@]}" --dry-run | sed 's/^/  /'
echo "a client without a certificate of the sites' CA is refused at the TLS handshake:"
curl -s --cacert "$dr/ca.crt" https://127.0.0.1:$drport/v1/info > /dev/null 2>&1 || echo "  refused"

say "at the DR site: verify --read-data, then restore the replicated point to cluster-b"
kill $srv; wait $srv
bin/ahvfs verify --repo "$dr/repo" --read-data
bin/ahvfs restore "$vm@latest" --repo "$dr/repo" "${cluster[@]}" --target-cluster cluster-b --name "$vm-from-dr" --network-map vlan10=vlan20
cmp "$demo/sim/vms/$vm-from-dr/disk-0.raw" "$demo/sim/vms/$vm/disk-0.raw" && echo "the VM restored from the DR copy has the live disk's bytes"

say "recovery plan: a test failover from the DR copy, stage by stage, renamed, on the test subnet (the dry run first, with the room the DR cluster has); status; undo"
sim_site() { # the plans' [[cluster]] table for the simulator
  printf '[[cluster]]\nname = "sim"\nprism = "127.0.0.1:%s"\nuser = "admin"\npassword_file = "%s"\nca_cert = "%s"\niscsi_port = %s\n' \
    "$port" "$demo/sim/admin.password" "$demo/sim/ca.crt" "$iscsi"
}
cat > "$demo/dr-plan.toml" <<PLAN
source_cluster = "sim"
target_cluster = "sim"               # one simulated Prism Central plays both sites here
target_ahv_cluster = "cluster-b"
repository = "$dr/repo"
test_network_map = ["vlan10=vlan20"]
test_suffix = "-drtest"
[[stage]]
vms = ["$vm"]
delay = "2s"
[[stage]]
vms = ["$vm2"]
PLAN
sim_site >> "$demo/dr-plan.toml"
bin/ahvfs failover test --dry-run "$demo/dr-plan.toml"
bin/ahvfs failover test "$demo/dr-plan.toml"
bin/ahvfs failover status "$demo/dr-plan.toml"
bin/ahvfs failover undo "$demo/dr-plan.toml"
bin/ahvfs failover status "$demo/dr-plan.toml"

say "NFS export: ahvfs nfs-serve; qemu-img and libnfs read a restore point given only the host (the portmapper on port 111)"
t=$(bin/ahvfs list --json "$vm" | jq -r '.[-1].time')
nfsport=(--listen 127.0.0.1:2049) base=nfs://127.0.0.1 opts=
if ! python3 -c 'import socket; [socket.socket(socket.AF_INET, k).bind(("127.0.0.1", p)) for p in (111, 2049) for k in (socket.SOCK_STREAM, socket.SOCK_DGRAM)]' 2>/dev/null; then
  p=${DEMO_NFS_PORT:-12049}  # 111 or 2049 taken (a system rpcbind): a private port, named in the URLs
  nfsport=(--listen 127.0.0.1:$p --portmap off) opts="?version=3&nfsport=$p&mountport=$p&auto-traverse-mounts=0"
  echo "(ports 111/2049 are taken here: serving on $p and naming it in the URLs)"
fi
bin/ahvfs nfs-serve "${nfsport[@]}" > "$demo/nfs.log" 2>&1 &
nfs=$!
trap 'rc=$?; kill $sim $gw $nfs 2>/dev/null; wait $sim $gw $nfs 2>/dev/null || true; exit $rc' EXIT
for _ in $(seq 1 100); do grep -q "serving" "$demo/nfs.log" && break; sleep 0.1; done
cat "$demo/nfs.log"
nfs-ls "$base/$vm/$opts"
qemu-img convert -O qcow2 "$base/$vm/$t/disk-0.raw$opts" "$demo/nfs-export.qcow2"
qemu-img compare "$demo/nfs-export.qcow2" "$demo/sim/vms/$vm/disk-0.raw"
nfs-cat "$base/$vm/$t/vm.json$opts" | jq -c '{restore_point, level, disks: [.disks[].size]}'

say "instant restore: the VM runs at once from the NFS export (a v4.2 external repository) and hydrates in the background"
nfsaddr=${nfsport[1]} # the --listen address
start=$(date +%s.%N)
bin/ahvfs instant-restore "$vm@latest" "${cluster[@]}" --nfs "$nfsaddr" --target-cluster cluster-b --name "$vm-instant" \
  --network-map vlan10=vlan20 --power-on
echo "VM $vm-instant powered on $(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }') s after the command started, before any byte was copied"
bin/ahvfs instant-restore status "$vm-instant" --ca-cert "$demo/sim/ca.crt"
echo "while the VM may read from it, the restore point is held: forget refuses it, prune keeps it"
bin/ahvfs holds
if bin/ahvfs forget "$vm@latest" 2> "$demo/forget.err"; then echo "forget removed a held restore point" >&2; exit 1; fi
sed 's/^/  /' "$demo/forget.err"
bin/ahvfs instant-restore finish "$vm-instant" --ca-cert "$demo/sim/ca.crt"
cmp "$demo/sim/vms/$vm-instant/disk-0.raw" "$demo/sim/vms/$vm/disk-0.raw" && echo "the hydrated disk has the live disk's bytes"
say "a file straight back into the running guest: restore-file --to-vm (vmm v4.3 transfer-files-to-guest, the disk read from nfs-serve)"
guestfs="$demo/sim/vms/$vm/disk-0.raw?offset=1048576"
d= f=  # the first regular file, going down the first directories
for _ in 1 2 3 4 5 6; do
  ls=$(debugfs -R "ls -p \"$d/\"" "$guestfs" 2>/dev/null)
  f=$(awk -F/ '$3 ~ /^100/ { print $6; exit }' <<< "$ls")
  [ -n "$f" ] && { f=$d/$f; break; }
  d=$d/$(awk -F/ '$3 ~ /^040/ && $6 != "." && $6 != ".." && $6 != "lost+found" { print $6; exit }' <<< "$ls")
done
echo "the guest $vm loses $f"
debugfs -w -R "rm \"$f\"" "$guestfs" > /dev/null 2>&1
debugfs -R "stat \"$f\"" "$guestfs" 2>&1 | grep -q "not found" && echo "  $f: gone"
bin/ahvfs restore-file "$vm@latest" "disk-0/part-1$f" --to-vm "$vm" --guest-credentials-file "$demo/sim/guest.credentials" \
  --nfs "$nfsaddr" --ca-cert "$demo/sim/ca.crt"
bin/ahvfs restore-file "$vm@latest" "disk-0/part-1$f" --to "$demo/restored" > /dev/null
debugfs -R "cat \"$f\"" "$guestfs" 2>/dev/null | cmp - "$demo/restored/$(basename "$f")" && echo "  $f is back in the guest, equal to the backup's"

say "verify-boot: prove a restore point boots (QEMU, a throwaway overlay, no network, the serial console watched)"
echo "the guest $vm2 installs a small bootable Linux (SYSLINUX, the Debian kernel, busybox) on its disk; back it up"
bin/mkimage --bootable --out "$demo/boot.raw"
dd if="$demo/boot.raw" of="$demo/sim/vms/$vm2/disk-0.raw" bs=1M conv=notrunc status=none
bin/ahvfs backup "${cluster[@]}" --vm "$vm2" | tail -1
bin/ahvfs verify-boot "$vm2@latest" --screenshot "$demo/boot-screen.png"
file "$demo/boot-screen.png" 2>/dev/null || ls -l "$demo/boot-screen.png"
if [ "$nfsaddr" = 127.0.0.1:2049 ]; then
  echo "the same restore point booted from the NFS export (QEMU's nfs:// driver) instead of a FUSE mount:"
  bin/ahvfs verify-boot "$vm2@latest" --nfs 127.0.0.1 | tail -1
fi
echo "the guest's kernel is deleted; the next backup would not boot, and verify-boot says so (exit code 8):"
bin/mkimage --bootable --no-kernel --out "$demo/boot-broken.raw"
dd if="$demo/boot-broken.raw" of="$demo/sim/vms/$vm2/disk-0.raw" bs=1M conv=notrunc status=none
bin/ahvfs backup "${cluster[@]}" --vm "$vm2" | tail -1
rc=0; bin/ahvfs verify-boot "$vm2@latest" --timeout 2m || rc=$?
echo "exit code $rc"
[ $rc = 8 ]
kill $nfs; wait $nfs || true

say "ahvfs daemon: two policies on schedules, the job history, Prometheus metrics, the web console (page and API) with users and roles"
printf 'demo console password\n' > "$demo/console.pw"
bin/ahvfs user add admin --role admin --password-file "$demo/console.pw" --users "$demo/users.json"
bin/ahvfs user add helpdesk --role restore-files --scope "name:$vm" --password-file "$demo/console.pw" --users "$demo/users.json"
bin/ahvfs user list --users "$demo/users.json"
admin_token=$(bin/ahvfs user token admin --users "$demo/users.json" 2> /dev/null)
help_token=$(bin/ahvfs user token helpdesk --users "$demo/users.json" 2> /dev/null)
cat > "$demo/ahvfs.toml" <<CFG
repository = "$demo/repo"
shutdown_timeout = "30s"
[log]
format = "json"
[http]
listen = "127.0.0.1:0"
users = "$demo/users.json"
[[cluster]]
name = "sim"
prism = "127.0.0.1:$port"
user = "admin"
password_file = "$demo/sim/admin.password"
ca_cert = "$demo/sim/ca.crt"
iscsi_port = $iscsi
concurrency = 2
[[policy]]
name = "gold"
vms = ["$vm"]
every = "1m"
rpo = "5m"
keep_last = 6
[[policy]]
name = "all"
vms = ["*"]
every = "4h"
full_every = 14
CFG
bin/ahvfs config check "$demo/ahvfs.toml"
bin/ahvfs daemon --config "$demo/ahvfs.toml" 2> "$demo/daemon.log" > /dev/null &
daemon=$!
jobs_of() { bin/ahvfs jobs --json --policy "$1" --kind backup | jq '.jobs | length'; }
for _ in $(seq 1 600); do
  [ "$(jobs_of gold)" -ge 1 ] && [ "$(jobs_of all)" -ge 1 ] && break
  sleep 0.5
done
addr=$(grep -o '"addr":"[^"]*"' "$demo/daemon.log" | head -1 | cut -d'"' -f4)
echo "both policies ran at start ($vm is in both: backed up by gold, the first, and reported by all):"
bin/ahvfs jobs --kind backup
echo "/metrics on $addr (promtool-clean Prometheus text; with console users it needs one who sees every VM: the admin token; a few series):"
curl -s -H "Authorization: Bearer $admin_token" "http://$addr/metrics" > "$demo/metrics.txt"
grep -E "^ahvfs_(backup_last_result|rpo_compliant|restore_point_newest_timestamp_seconds)\{policy=\"gold\"" "$demo/metrics.txt"
grep -E '^ahvfs_(vm_policy_conflict|repository_stored_bytes|repository_dedup_ratio|repository_gc_reclaimable_bytes|jobs_total)' "$demo/metrics.txt"
echo "the console's API: an admin's token sees every protected VM (failing ones first); helpdesk (restore-files, scope name:$vm) sees $vm alone:"
curl -s -H "Authorization: Bearer $admin_token" "http://$addr/api/v1/vms" | jq -c '[.vms[] | {name, policy, last_result, rpo_compliant}]'
curl -s -H "Authorization: Bearer $help_token" "http://$addr/api/v1/vms" | jq -c '[.vms[].name]'
curl -s -H "Authorization: Bearer $help_token" "http://$addr/api/v1/vms/$vm/points" | jq -c '[.points[] | {name, level, size}]'
at=$(curl -s -H "Authorization: Bearer $help_token" "http://$addr/api/v1/vms/$vm/points" | jq -r '.points[0].name | sub("^[^@]*@"; "")')
part=$(curl -s -H "Authorization: Bearer $help_token" "http://$addr/api/v1/vms/$vm/points/$at/files/disk-0" | jq -r '[.entries[] | select(.type == "dir") | .name][0]')
echo "helpdesk browses $vm@$at's guest files (disk-0/$part) and downloads that partition as a .tar.gz, streamed:"
curl -s -H "Authorization: Bearer $help_token" "http://$addr/api/v1/vms/$vm/points/$at/files/disk-0/$part" | jq -c '[.entries[] | {name, type, size}] | .[:6]'
curl -s -H "Authorization: Bearer $help_token" -o "$demo/part.tar.gz" "http://$addr/api/v1/vms/$vm/points/$at/download/disk-0/$part"
echo "  $(tar tzf "$demo/part.tar.gz" | wc -l) names in the archive, $(stat -c %s "$demo/part.tar.gz") bytes"
outsider=$(curl -s -H "Authorization: Bearer $admin_token" "http://$addr/api/v1/vms" | jq -r --arg vm "$vm" '[.vms[].name | select(. != $vm)][0]')
echo "helpdesk asking for $outsider's restore points: HTTP $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $help_token" "http://$addr/api/v1/vms/$outsider/points") (and in the audit log:)"
grep -c "\"target\":\"vm $outsider\"" "$demo/audit.log"
echo "the page itself: http://$addr/ (embedded in the binary, no CDN; a strict Content-Security-Policy):"
curl -s "http://$addr/" | grep -o '<title>[^<]*</title>'
curl -s -D - -o /dev/null "http://$addr/ui/app.js" | grep -i '^content-security-policy' | cut -c1-100
echo "helpdesk may not back up: HTTP $(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $help_token" "http://$addr/api/v1/vms/$vm/backup")"
job=$(curl -s -X POST -H "Authorization: Bearer $admin_token" "http://$addr/api/v1/vms/$vm/backup" | jq -r .job)
echo "the admin backs $vm up now (job $job), and follows it as the page does:"
for _ in $(seq 1 600); do
  state=$(curl -s -H "Authorization: Bearer $admin_token" "http://$addr/api/v1/jobs/$job")
  case $(jq -r .result <<< "$state") in running|queued) sleep 0.5 ;; *) break ;; esac
done
jq -c '{kind, trigger, result, notes, vms: [.vms[] | {vm, level, restore_point}]}' <<< "$state"
newest=$(jq -r '.vms[0].restore_point | sub("^[^@]*@"; "")' <<< "$state")
echo "lock it for 7 days, then try to forget it:"
curl -s -X POST -H "Authorization: Bearer $admin_token" -d "{\"until\": \"$(date -u -d '+7 days' +%Y-%m-%dT%H:%M:%SZ)\"}" "http://$addr/api/v1/vms/$vm/points/$newest/lock"
curl -s -X POST -H "Authorization: Bearer $admin_token" -w ' (HTTP %{http_code})\n' "http://$addr/api/v1/vms/$vm/points/$newest/forget"
kill -TERM $daemon; wait $daemon && echo "SIGTERM: the daemon stopped cleanly (exit 0)"

say "planned failover of $vm to cluster-b (one simulated Prism Central plays both sites): guest shutdown, a last incremental backup, sync to the DR copy, restore on the production subnet"
cat > "$demo/move-plan.toml" <<PLAN
source_cluster = "sim"
target_cluster = "sim"
target_ahv_cluster = "cluster-b"
repository = "$dr/repo"
source_repository = "$AHVFS_REPO"
network_map = ["vlan10=vlan20"]
shutdown_timeout = "30s"
[[stage]]
vms = ["$vm"]
PLAN
sim_site >> "$demo/move-plan.toml"
bin/ahvfs failover planned --dry-run "$demo/move-plan.toml"
bin/ahvfs failover planned "$demo/move-plan.toml"
say "make it permanent: the DR VM's first backup at DR is an incremental on the point it came from"
bin/ahvfs failover permanent "$demo/move-plan.toml"
bin/ahvfs list --repo "$dr/repo" "$vm" | tail -3
bin/ahvfs failover status "$demo/move-plan.toml"
say "the VM works at the DR site; failback shuts it down, backs it up last, sends only what changed, and replaces the old VM at cluster-a"
uuid=$(bin/ahvfs failover status --json "$demo/move-plan.toml" | jq -r '.state.vms[0].uuid')
drdisk="$demo/sim/vms/$vm-${uuid:0:8}/disk-0.raw"
dd if=/dev/urandom of="$drdisk" bs=1M count=4 seek=200 conv=notrunc status=none
cp --sparse=always "$drdisk" "$demo/dr-disk-at-failback.raw"
bin/ahvfs failback --json "$demo/move-plan.toml" > "$demo/failback.json"
jq -r '"failback sent \(.failback.bytes_sent) bytes; \(.vms[0].vm) is back at the source as \(.vms[0].back.uuid)"' "$demo/failback.json"
back=$(jq -r '.vms[0].back.uuid' "$demo/failback.json")
cmp "$demo/sim/vms/$vm-${back:0:8}/disk-0.raw" "$demo/dr-disk-at-failback.raw" && echo "its disk is the DR VM's disk at shutdown, byte for byte"
bin/ahvfs failover status "$demo/move-plan.toml"

say "XCP-ng: xapisim plays a pool (XAPI JSON-RPC, a TLS NBD server, XVA and VHD exports) whose VM xen01 has a real ext4 disk"
xport=${DEMO_XAPI_PORT:-18443} xnbd=${DEMO_NBD_PORT:-20809}
cp --sparse=always "$demo/sim/vms/$vm2/disk-0.raw" "$demo/xen-disk.raw"
bin/xapisim --listen 127.0.0.1:$xport --nbd-listen 127.0.0.1:$xnbd --state "$demo/xen" --vm xen01:"$demo/xen-disk.raw" --quiet > "$demo/xapisim.log" 2>&1 &
xsim=$!
trap 'rc=$?; kill $sim $gw $nfs $xsim 2>/dev/null; wait $sim $gw $nfs $xsim 2>/dev/null || true; exit $rc' EXIT
for _ in $(seq 1 600); do
  grep -q "Password file:" "$demo/xapisim.log" 2>/dev/null && break
  kill -0 $xsim 2>/dev/null || { cat "$demo/xapisim.log"; exit 1; }
  sleep 0.5
done
cat "$demo/xapisim.log"
xen=(--source xapi://127.0.0.1:$xport --user root --password-file "$demo/xen/root.password" --ca-cert "$demo/xen/ca.crt")
xenreport() { jq -r '.vms[] | "\(.vm): \(.level) \(.consistency) via \(.data_path), read \(.bytes_read) bytes, stored \(.bytes_new) new\(if .warnings then "; " + (.warnings|join("; ")) else "" end)"'; }
xeninv() { curl -s --cacert "$demo/xen/ca.crt" -u "root:$(cat "$demo/xen/root.password")" "https://127.0.0.1:$xport/sim/inventory"; }
xensnaps() { xeninv |
  jq -r '"snapshots on the pool: \([.vms[]|select(.is_snapshot)]|length); their disks: \([.vdis[]|select(.is_snapshot)|.type + (if .has_data then " with data" else " (data destroyed)" end)]|join(", "))"'; }

say "ahvfs backup --source xapi:// --strategy cbt (full: changed-block tracking turned on, the snapshot read over the pool's NBD server with TLS)"
AHVFS_PRISM= bin/ahvfs backup "${xen[@]}" --strategy cbt --json | xenreport
xensnaps

say "the guest writes 8 MiB; the incremental reads only the 64 KiB blocks VDI.list_changed_blocks names"
dd if=/usr/local/go/bin/go of="$demo/xen/vms/xen01/disk-0.raw" bs=1M count=8 seek=100 conv=notrunc status=none
AHVFS_PRISM= bin/ahvfs backup "${xen[@]}" --strategy cbt --json | xenreport
bin/ahvfs cat "xen01@latest" disk-0 | cmp - "$demo/xen/vms/xen01/disk-0.raw" && echo "xen01@latest is the live disk, byte for byte"
xensnaps

say "XVA strategy: the snapshot's XVA streamed straight into the repository (full), then a delta VHD against the kept reference (incremental)"
AHVFS_PRISM= bin/ahvfs backup "${xen[@]}" --strategy xva --json | xenreport
dd if=/usr/local/go/bin/go of="$demo/xen/vms/xen01/disk-0.raw" bs=1M count=4 seek=300 conv=notrunc status=none
AHVFS_PRISM= bin/ahvfs backup "${xen[@]}" --strategy xva --json | xenreport
bin/ahvfs cat "xen01@latest" disk-0 | cmp - "$demo/xen/vms/xen01/disk-0.raw" && echo "identical again"
xensnaps

say "restore xen01 onto the XCP-ng pool under a new name (disks imported raw into new VDIs, the VM from its record)"
AHVFS_PRISM= bin/ahvfs restore xen01@latest --target xapi://127.0.0.1:$xport --user root --password-file "$demo/xen/root.password" \
  --ca-cert "$demo/xen/ca.crt" --name xen01-restored

say "across hypervisors: an AHV VM's restore point onto the XCP-ng pool, and xen01's onto AHV's cluster-b (bus, boot mode and networks mapped; what cannot carry over is named)"
AHVFS_PRISM= bin/ahvfs restore "$vm2@latest" --target xapi://127.0.0.1:$xport --user root --password-file "$demo/xen/root.password" \
  --ca-cert "$demo/xen/ca.crt" --name "$vm2-on-xcp-ng" --network-map vlan10=vlan20
bin/ahvfs restore xen01@latest "${cluster[@]}" --target-cluster cluster-b --name xen01-on-ahv \
  --network-map "Pool-wide network associated with eth0=vlan10"

say "XCP-ng and AHV restore points side by side in one repository"
bin/ahvfs list | grep -E "^(VM|xen01|$vm2)" | tail -6
say "ahvfs daemon protects the pool on a schedule as it does a Prism: a [[cluster]] with xapi, a policy that names it"
cat > "$demo/xen-daemon.toml" <<CFG
repository = "$demo/repo"
shutdown_timeout = "30s"
[log]
format = "json"
[[cluster]]
name = "xcp"
xapi = "xapi://127.0.0.1:$xport"
password_file = "$demo/xen/root.password"
ca_cert = "$demo/xen/ca.crt"
strategy = "cbt"
[[policy]]
name = "xen"
vms = ["xen*"]
exclude = ["*-restored"]
every = "1h"
keep_last = 3
CFG
bin/ahvfs config check "$demo/xen-daemon.toml"
AHVFS_PRISM= bin/ahvfs daemon --config "$demo/xen-daemon.toml" 2> "$demo/xen-daemon.log" > /dev/null &
xdaemon=$!
trap 'rc=$?; kill $sim $gw $nfs $xsim $xdaemon 2>/dev/null; wait $sim $gw $nfs $xsim $xdaemon 2>/dev/null || true; exit $rc' EXIT
for _ in $(seq 1 600); do
  [ "$(jobs_of xen)" -ge 1 ] && break
  kill -0 $xdaemon 2>/dev/null || { cat "$demo/xen-daemon.log"; exit 1; }
  sleep 0.5
done
bin/ahvfs jobs --policy xen
kill -TERM $xdaemon; wait $xdaemon && echo "SIGTERM: the daemon stopped cleanly (exit 0)"
bin/ahvfs list xen01 | tail -4
xensnaps

say "restore xen01 over itself (--overwrite): the new VM is complete first; only then is the original shut down and destroyed, with its disks and its reference snapshot; the new VM takes its MAC"
was=$(xeninv | jq -r '.vms[]|select(.name=="xen01" and (.is_snapshot|not))|.uuid')
AHVFS_PRISM= bin/ahvfs restore xen01@latest --target xapi://127.0.0.1:$xport --user root --password-file "$demo/xen/root.password" \
  --ca-cert "$demo/xen/ca.crt" --overwrite --power-on
echo "xen01 was VM $was; now: $(xeninv | jq -r '.vms[]|select(.name=="xen01" and (.is_snapshot|not))|"VM \(.uuid), \(.power_state)"')"
xensnaps
AHVFS_PRISM= bin/ahvfs cleanup "${xen[@]}"
