#!/usr/bin/env bash
# S3 repository benchmark (issue 15): import of an image into a repository
# on versitygw (loopback, its posix backend on the same disk) beside the
# same import into a local repository, and `cat` from each, in the same
# run. Targets: S3 import >= 0.7x local, S3 cat >= 0.5x local.
#
#   tools/bench/s3.sh [IMAGE]     (default: the 4 GiB ext4 image engine.sh builds)
#
# The image is read from the page cache (warmed first). The cat from S3
# runs with an empty chunk cache on a cache directory that holds the index
# only, so every byte comes from the gateway.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${BENCH_OUT:-tools/bench/out}
mkdir -p "$out"
tools/install-deps.sh test
vgw=${AHVFS_VERSITYGW:-${AHVFS_TOOLS_DIR:-$HOME/.cache/ahvfs-tools}/versitygw-v1.8.0/versitygw}
go build -o bin/ ./cmd/ahvfs ./tools/mkimage
img=${1:-$out/engine-4g.raw}
if [ ! -f "$img" ]; then
  echo "building $img (real files, 70% full) ..." >&2
  bin/mkimage --out "$img" --size 4GiB --seed 3
fi
size=$(stat -c %s "$img")
cat "$img" > /dev/null
work=$(mktemp -d "$out/s3-XXXX")
. tools/bench/lib.sh
port=$(free_port)
mkdir -p "$work/gw"
export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret-key
ROOT_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID ROOT_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY \
  "$vgw" --port "127.0.0.1:$port" --quiet --keep-alive posix "$work/gw" > "$work/gw.log" 2>&1 &
gwpid=$!
trap 'kill $gwpid 2>/dev/null; wait $gwpid 2>/dev/null; rm -rf "$work"' EXIT
wait_port "$port" || true
s3=(--repo s3://bench/repo --s3-endpoint "http://127.0.0.1:$port" --cache-dir "$work/cache" --state-dir "$work/state")

bin/ahvfs init --repo "$work/local" > /dev/null
bin/ahvfs init "${s3[@]}" > /dev/null
sync
t_local=$(secs bin/ahvfs import --repo "$work/local" --vm bench "$img")
sync
t_s3=$(secs bin/ahvfs import "${s3[@]}" --vm bench "$img")
sync
t_cat_local=$(secs sh -c "bin/ahvfs cat --repo $work/local bench@latest disk-0 > /dev/null")
t_cat_s3=$(secs sh -c "bin/ahvfs cat ${s3[*]} bench@latest disk-0 > /dev/null")
bin/ahvfs cat "${s3[@]}" bench@latest disk-0 | cmp - "$img"

printf '\nimage: %s (%s bytes), machine: %s cores\n' "$img" "$size" "$(nproc)"
printf '%-34s %8s %8s\n' "operation" "seconds" "MB/s"
printf '%-34s %8s %8s\n' "import, local repository" "$t_local" "$(mbps "$size" "$t_local")"
printf '%-34s %8s %8s\n' "import, S3 repository (versitygw)" "$t_s3" "$(mbps "$size" "$t_s3")"
printf '%-34s %8s %8s\n' "cat, local repository" "$t_cat_local" "$(mbps "$size" "$t_cat_local")"
printf '%-34s %8s %8s\n' "cat, S3 repository (versitygw)" "$t_cat_s3" "$(mbps "$size" "$t_cat_s3")"
awk -v l="$t_local" -v s="$t_s3" -v cl="$t_cat_local" -v cs="$t_cat_s3" 'BEGIN {
  printf "\nS3 import: %.2fx local (target >= 0.7x); S3 cat: %.2fx local (target >= 0.5x)\n", l/s, cl/cs }'
