#!/usr/bin/env bash
# Replication benchmark: `ahvfs sync` of one restore point to an empty
# repository, local path to local path and over mutual TLS on loopback
# (`ahvfs serve`), beside `rsync -a` of the source repository's directory
# and `restic copy` of the same image between two restic repositories,
# same run. Targets: ahvfs sync >= 0.8x rsync -a, >= 5x restic copy.
#
#   tools/bench/sync.sh [IMAGE]   (default: the 4 GiB ext4 image engine.sh builds;
#                                  SIZE=512MiB builds a smaller one for a quick try;
#                                  ENCRYPT=1 encrypts the ahvfs repositories;
#                                  KEEP=1 keeps the work directory)
#
# Run as root, the page cache is dropped (sync; echo 3 > drop_caches)
# before every timed step, so each tool reads its source from the disk;
# otherwise only sync(1) runs between them. Ratios compare the times to
# replicate the same image; each tool moves its own repository format, so
# the bytes moved differ (rsync: every file of the ahvfs repository, parity
# included; restic: restic's packs). rsync -a does not fsync what it
# writes; rsync --fsync, when the installed rsync has it, is the line that
# makes its data as durable as ahvfs sync's.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${BENCH_OUT:-tools/bench/out}
mkdir -p "$out"
tools/install-deps.sh bench
for t in restic rsync openssl jq python3; do
  command -v "$t" > /dev/null || { echo "sync.sh: needs $t (apt-get install $t)" >&2; exit 1; }
done
go build -o bin/ ./cmd/ahvfs ./tools/mkimage
sz=${SIZE:-4GiB}
img=${1:-$out/engine-4g.raw}
[ -n "${1:-}" ] || [ "$sz" = 4GiB ] || img=$out/sync-$sz.raw
if [ ! -f "$img" ]; then
  echo "building $img (real files, 70% full) ..." >&2
  bin/mkimage --out "$img.tmp" --size "$sz" --seed 3
  mv "$img.tmp" "$img"
fi
size=$(stat -c %s "$img")
load0=$(cut -d' ' -f1-3 /proc/loadavg)
work=$(realpath "$(mktemp -d "$out/sync-XXXX")")
srvpid=
cleanup() {
  if [ -n "$srvpid" ]; then kill "$srvpid" 2> /dev/null || true; wait "$srvpid" 2> /dev/null || true; fi
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
export RESTIC_PASSWORD=bench RESTIC_FROM_PASSWORD=bench

. tools/bench/lib.sh

# The source: one restore point of the image (not timed). ENCRYPT=1: the
# source and each DR copy have their own password (--peer-password-file
# names the other side's on a local init/sync).
sp=() dp=() peer_s=() peer_d=() enc=()
if [ -n "${ENCRYPT:-}" ]; then
  echo bench-source > "$work/src.pw"; echo bench-dr > "$work/dst.pw"
  sp=(--repo-password-file "$work/src.pw") dp=(--repo-password-file "$work/dst.pw")
  peer_s=(--peer-password-file "$work/src.pw") peer_d=(--peer-password-file "$work/dst.pw")
  enc=(--encrypt)
fi
src=$work/src
bin/ahvfs init --repo "$src" "${enc[@]}" "${sp[@]}" > /dev/null
bin/ahvfs import --repo "$src" "${sp[@]}" --vm bench "$img" > /dev/null
src_bytes=$(du_b "$src")

# 1. ahvfs sync, local path to local path, then again with nothing new.
bin/ahvfs init --repo "$work/dst" --copy-params-from "$src" "${enc[@]}" "${dp[@]}" "${peer_s[@]}" > /dev/null
cold
t_local=$(secs_to "$work/local.json" bin/ahvfs sync --repo "$src" "${sp[@]}" --to "$work/dst" "${peer_d[@]}" --json)
cold
t_again=$(secs_to "$work/again.json" bin/ahvfs sync --repo "$src" "${sp[@]}" --to "$work/dst" "${peer_d[@]}" --json)

# 2. ahvfs sync over mutual TLS on loopback to `ahvfs serve`.
tls=$work/tls
mkdir "$tls"
cert() { # name, subject, extensions; signed by the CA
  openssl ecparam -name prime256v1 -genkey -noout -out "$tls/$1.key"
  openssl req -new -key "$tls/$1.key" -subj "$2" -out "$tls/$1.csr"
  printf '%s\n' "$3" > "$tls/$1.ext"
  openssl x509 -req -in "$tls/$1.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" -CAcreateserial \
    -days 2 -extfile "$tls/$1.ext" -out "$tls/$1.pem" 2> /dev/null
}
openssl ecparam -name prime256v1 -genkey -noout -out "$tls/ca.key"
openssl req -x509 -new -key "$tls/ca.key" -subj /CN=ahvfs-bench-ca -days 2 -out "$tls/ca.pem"
cert srv /CN=127.0.0.1 $'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth'
cert cli /CN=ahvfs-bench-client 'extendedKeyUsage=clientAuth'
bin/ahvfs init --repo "$work/dst2" --copy-params-from "$src" "${enc[@]}" "${dp[@]}" "${peer_s[@]}" > /dev/null
port=$(free_port)
bin/ahvfs serve --repo "$work/dst2" "${dp[@]}" --listen "127.0.0.1:$port" --tls-cert "$tls/srv.pem" --tls-key "$tls/srv.key" \
  --client-ca "$tls/ca.pem" > "$work/serve.log" 2>&1 &
srvpid=$!
if ! wait_port "$port"; then
  echo "sync.sh: ahvfs serve did not listen on 127.0.0.1:$port:" >&2; cat "$work/serve.log" >&2; exit 1
fi
cold
t_tls=$(secs_to "$work/tls.json" bin/ahvfs sync --repo "$src" "${sp[@]}" --to "https://127.0.0.1:$port" \
  --tls-cert "$tls/cli.pem" --tls-key "$tls/cli.key" --ca-cert "$tls/ca.pem" --json)
kill "$srvpid"; wait "$srvpid" 2> /dev/null || true; srvpid=

# Both targets hold the image (not timed).
for d in dst dst2; do
  bin/ahvfs cat --repo "$work/$d" "${dp[@]}" bench@latest disk-0 | cmp - "$img" || { echo "sync.sh: $d differs from the image" >&2; exit 1; }
done

# 3. rsync -a of the source repository's directory to an empty one.
cold
t_rsync=$(secs rsync -a "$src/" "$work/rsync/")
rsync_bytes=$(du_b "$work/rsync")
t_rsync_fsync=
if [[ $(rsync --help 2>&1) == *--fsync* ]]; then # (not grep -q: with pipefail, rsync's SIGPIPE fails the test)
  cold
  t_rsync_fsync=$(secs rsync -a --fsync "$src/" "$work/rsync-fsync/")
fi

# 3b. The floor of a durable copy on this disk: dd writing as many bytes
# as the DR copy holds (packs and parity) and fsyncing them.
dst_bytes=$(du_b "$work/dst")
cold
t_floor=$(secs dd if=/dev/zero of="$work/floor" bs=4M count=$(( (dst_bytes + (4<<20) - 1) / (4<<20) )) conv=fsync status=none)
rm -f "$work/floor"

# 4. restic copy of the same image between two restic repositories.
restic init -q -r "$work/restic-a"
restic -q -r "$work/restic-a" backup "$img" > /dev/null
restic init -q -r "$work/restic-b" --from-repo "$work/restic-a" --copy-chunker-params > /dev/null
cold
t_restic=$(secs restic -q -r "$work/restic-b" copy --from-repo "$work/restic-a")
restic_bytes=$(du_b "$work/restic-b/data")

b_local=$(jq -r .bytes_sent "$work/local.json") s_local=$(jq -r .seconds "$work/local.json")
b_tls=$(jq -r .bytes_sent "$work/tls.json") s_tls=$(jq -r .seconds "$work/tls.json")
b_again=$(jq -r .bytes_sent "$work/again.json")
cache="page cache dropped before each step"; [ "$(id -u)" = 0 ] || cache="page cache NOT dropped (not root)"
printf '\nimage: %s (%s bytes); ahvfs source repository: %s bytes%s; machine: %s cores, load %s at start, %s at end; %s\n' \
  "$img" "$size" "$src_bytes" "${ENCRYPT:+ (encrypted)}" "$(nproc)" "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)" "$cache"
printf 'ahvfs sync --json, local: %s\n' "$(jq -c . "$work/local.json")"
printf 'ahvfs sync --json, TLS:   %s\n' "$(jq -c . "$work/tls.json")"
row() { printf '%-40s %8s %14s %10s %10s\n' "$@"; }
row "operation" "seconds" "bytes moved" "moved MB/s" "image MB/s"
row "ahvfs sync, local path" "$t_local" "$b_local" "$(mbps "$b_local" "$t_local")" "$(mbps "$size" "$t_local")"
row "ahvfs sync, TLS loopback (ahvfs serve)" "$t_tls" "$b_tls" "$(mbps "$b_tls" "$t_tls")" "$(mbps "$size" "$t_tls")"
row "ahvfs sync again, nothing new (local)" "$t_again" "$b_again" "" ""
row "rsync -a of the repository (no fsync)" "$t_rsync" "$rsync_bytes" "$(mbps "$rsync_bytes" "$t_rsync")" "$(mbps "$size" "$t_rsync")"
if [ -n "$t_rsync_fsync" ]; then
  row "rsync -a --fsync of the repository" "$t_rsync_fsync" "$rsync_bytes" "$(mbps "$rsync_bytes" "$t_rsync_fsync")" "$(mbps "$size" "$t_rsync_fsync")"
fi
row "dd of the DR copy's size, fsync (floor)" "$t_floor" "$dst_bytes" "$(mbps "$dst_bytes" "$t_floor")" ""
row "restic $(restic version | cut -d' ' -f2) copy" "$t_restic" "$restic_bytes" "$(mbps "$restic_bytes" "$t_restic")" "$(mbps "$size" "$t_restic")"
awk -v l="$t_local" -v t="$t_tls" -v r="$t_rsync" -v f="${t_rsync_fsync:-0}" -v fl="$t_floor" -v rc="$t_restic" -v sl="$s_local" -v st="$s_tls" 'BEGIN {
  printf "\n(ahvfs own \"seconds\": local %s, TLS %s)\n", sl, st
  printf "ahvfs sync vs rsync -a:       local %.2fx, TLS %.2fx (target >= 0.8x)\n", r/l, r/t
  if (f > 0) printf "ahvfs sync vs rsync --fsync:  local %.2fx, TLS %.2fx\n", f/l, f/t
  printf "durable-write floor (dd conv=fsync) vs rsync -a: %.2fx; ahvfs sync local vs the floor: %.2fx\n", r/fl, fl/l
  printf "ahvfs sync vs restic copy:    local %.1fx, TLS %.1fx (target >= 5x)\n", rc/l, rc/t }'
