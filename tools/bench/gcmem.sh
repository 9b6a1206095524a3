#!/usr/bin/env bash
# gc's memory on a large index (issue 14): peak RSS of `ahvfs gc --dry-run`
# and of a real `ahvfs gc` on a repository of CHUNKS distinct chunks
# (default 5 million), against the 300 MiB target.
#
#   tools/bench/gcmem.sh            (CHUNKS=5000000; KEEP=1 keeps the work directory,
#                                    with repo-before, the repository before gc)
#
# The repository comes from tools/bench/synthrepo: real chunks, packs,
# parity and index entries, each chunk 64 KiB of a counter and zeros (S2
# stores it in a few bytes), so 5 million chunks fit in ~1 GB. Two restore
# points; forgetting the first leaves a fifth of the chunks unused, spread
# over every pack, so gc marks 4 million chunks, rewrites packs and
# deletes the old ones. Needs ~3 GB free.
set -euo pipefail
cd "$(dirname "$0")/../.."
chunks=${CHUNKS:-5000000}
out=${BENCH_OUT:-tools/bench/out}
mkdir -p "$out"
go build -o bin/ ./cmd/ahvfs ./tools/bench/synthrepo
work=$(realpath "$(mktemp -d "$out/gcmem-XXXX")")
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
repo=$work/repo
. tools/bench/lib.sh

secs=$(secs bin/synthrepo -repo "$repo" -chunks "$chunks") rss=$(cat "$work/rss")
printf 'built in %s s (peak RSS %s MiB); repository %s MiB, index %s MiB\n' "$secs" $((rss / 1024)) \
  "$(du -sm "$repo" | cut -f1)" "$(du -sm "$repo/index" | cut -f1)"
bin/ahvfs forget --repo "$repo" synth@2026-01-01T01:00:00Z > /dev/null
if [ -n "${KEEP:-}" ]; then cp -a "$repo" "$work/repo-before"; sync; fi

measure() { # label, command...: seconds and peak RSS
  secs=$(secs_to "$work/last.json" "${@:2}") rss=$(cat "$work/rss")
  printf '%-28s %8s s %8s MiB (target: at most 300 MiB)\n' "$1" "$secs" $((rss / 1024))
  jq -c '{blobs, unused_blobs, packs, packs_deleted, packs_rewritten, phase_seconds: (.phase_seconds | map_values(. * 1000 | round / 1000))}' "$work/last.json"
}
measure "ahvfs gc --dry-run" bin/ahvfs gc --repo "$repo" --dry-run --json
measure "ahvfs gc" bin/ahvfs gc --repo "$repo" --json
bin/ahvfs verify --repo "$repo" | tail -1
