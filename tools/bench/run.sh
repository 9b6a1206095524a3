#!/usr/bin/env bash
# make bench: every benchmark in tools/bench, one after the other, each
# printing its figures beside its reference (docs/PERFORMANCE.md).
set -uo pipefail
cd "$(dirname "$0")/../.."
status=0
run() { printf '\n######## %s\n' "$*"; "$@" || status=1; }
run tools/bench/engine.sh
run go run ./tools/bench/codecs -image tools/bench/out/engine-4g.raw
run go run ./tools/bench/iscsi
[ -x tools/bench/mount/run.sh ] && run tools/bench/mount/run.sh
[ -f tools/bench/restore/main.go ] && run go run ./tools/bench/restore -size 2GiB
[ -d tools/bench/backup ] && { [ -x tools/bench/backup/run.sh ] && run tools/bench/backup/run.sh || run go run ./tools/bench/backup; }
run tools/bench/repair.sh
run tools/bench/retention.sh
run tools/bench/s3.sh
run tools/bench/sync.sh
run tools/bench/console-download.sh
run tools/bench/nbd-read.sh
exit $status
