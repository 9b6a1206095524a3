#!/usr/bin/env bash
# NBD read benchmark (issue 21): the whole of a qemu-nbd export read by
# ahvfs's userspace NBD client beside libnbd's `nbdcopy URI null:`, same
# export, same run. Target: ours >= 0.9x nbdcopy.
#
#   tools/bench/nbd-read.sh   (SIZE_MIB=4096 the image, ROUNDS=5, TLS=0 skips
#                              the TLS variant, COLD=1 drops the page cache
#                              before each step instead of warming it (root),
#                              KEEP=1 keeps the work directory)
#
# The image: SIZE_MIB of AES-128-CTR keystream (incompressible, no zero
# block, so nothing is a hole), built once in tools/bench/out and kept.
# qemu-nbd serves it read-only (--read-only --shared=8 --persistent
# --format=raw: it then advertises multi-conn) on a Unix socket, and for
# the TLS variant on 127.0.0.1 with an x509 certificate of a CA made here
# (TLS 1.3, as an XCP-ng host's NBD server is reached).
#
# Four readers, each to nowhere:
#   nbdcopy     nbdcopy URI null: with its defaults; on this machine (2
#               cores) that is 2 connections (multi-conn, one per thread),
#               64 requests of 256 KiB in flight on each (nbdcopy -v says).
#   nbdread     tools/bench/nbdread: package nbd the same way, nbd.Dial
#               per connection, as many connections as nbdcopy opens, 64
#               ReadAt callers of 256 KiB each on each (QueueDepth 64,
#               MaxRequest 256 KiB). The like-for-like figure: the ratio.
#   nbdread -connections 1: the same on one connection (one nbd.Client,
#               64 callers per connection nbdcopy opens, QueueDepth as
#               many: what a caller of the package gets without
#               multi-conn).
#   nbd cat     bin/ahvfs nbd cat URI > /dev/null: the CLI as it is (one
#               connection, 8 MiB ReadAt calls one after the other, default
#               Options).
# Before the rounds, nbd cat's output is compared with the image and
# nbdread's SHA-256 with the image's (not timed). In each round the order
# of the four alternates, so that they share whatever else loads the
# machine; before each step the image is read into the page cache (cat >
# /dev/null: qemu-nbd then serves from memory and the figure is the
# protocol's and the clients', not the disk's), or with COLD=1 the page
# cache is dropped. Times are wall seconds from the process's start to its
# exit (connect and handshake included); CPU seconds are the reader's
# user+system (time(1)) and qemu-nbd's over the step (/proc/PID/stat).
# Medians of the rounds; the ratio is nbdcopy's median time over
# nbdread's, and each round's ratio is printed too (the two ran next to
# each other, under the same load) with its median.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${BENCH_OUT:-tools/bench/out}
mkdir -p "$out"
tools/install-deps.sh bench
for t in qemu-nbd nbdcopy openssl sha256sum cmp; do
  command -v "$t" > /dev/null || { echo "nbd-read.sh: needs $t (apt-get install qemu-utils libnbd-bin openssl)" >&2; exit 1; }
done
if [ -n "${COLD:-}" ] && [ "$(id -u)" != 0 ]; then
  echo "nbd-read.sh: COLD=1 drops the page cache: run as root" >&2
  exit 1
fi
go build -o bin/ ./cmd/ahvfs ./tools/bench/nbdread
. tools/bench/lib.sh
mib=${SIZE_MIB:-4096}
rounds=${ROUNDS:-5}
size=$((mib << 20))
img=$out/nbd-${mib}m.raw
if [ ! -f "$img" ]; then
  free_kb=$(df -Pk "$out" | awk 'NR == 2 { print $4 }')
  if [ "$free_kb" -lt $((size / 1024 + (1 << 20))) ]; then
    echo "nbd-read.sh: $out has $((free_kb >> 20)) GiB free; $((mib / 1024 + 1)) GiB needed (SIZE_MIB=2048 for a smaller image)" >&2
    exit 1
  fi
  echo "building $img ($mib MiB, incompressible) ..." >&2
  head -c "$size" /dev/zero | openssl enc -aes-128-ctr -nosalt -K 000102030405060708090a0b0c0d0e0f \
    -iv 00000000000000000000000000000000 > "$img.tmp"
  mv "$img.tmp" "$img"
fi
[ "$(stat -c %s "$img")" = "$size" ] || { echo "nbd-read.sh: $img is not $size bytes (remove it)" >&2; exit 1; }
bench_work nbd
load0=$(cut -d' ' -f1-3 /proc/loadavg)
hz=$(getconf CLK_TCK)

# serve NAME ARGS...: qemu-nbd on the image with ARGS; $qpid its PID
# (in $pids).
serve() {
  qemu-nbd --persistent --shared=8 --read-only --format=raw "${@:2}" "$img" > "$work/$1.log" 2>&1 &
  qpid=$!
  pids+=("$qpid")
}
# ticks: qemu-nbd's user+system clock ticks so far.
ticks() { awk '{ print $14 + $15 }' "/proc/$qpid/stat"; }
# step CMD...: one timed read; $e its wall seconds, $c its CPU seconds,
# $q qemu-nbd's CPU seconds meanwhile.
step() {
  local q0 us ss
  if [ -n "${COLD:-}" ]; then cold; else cat "$img" > /dev/null; fi
  q0=$(ticks)
  /usr/bin/time -f "%e %U %S" -o "$work/time" "$@" > /dev/null 2> "$work/step.err" ||
    { echo "nbd-read.sh: failed: $*" >&2; cat "$work/step.err" >&2; exit 1; }
  read -r e us ss < "$work/time"
  c=$(awk -v a="$us" -v b="$ss" 'BEGIN { printf "%.2f", a + b }')
  q=$(awk -v a="$q0" -v b="$(ticks)" -v hz="$hz" 'BEGIN { printf "%.2f", (b - a) / hz }')
}
median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
row() { printf '%-34s %-36s %6s %6s  %s\n' "$@"; }

want=$(sha256sum < "$img" | cut -d' ' -f1)
# bench TITLE URI URI2 [FLAG...]: the checks, the rounds and the table;
# nbdcopy reads URI, nbdread and nbd cat URI2 with the FLAGs.
bench() {
  local title=$1 uri=$2 ours=$3 r s conns
  local -a extra=("${@:4}") t_copy=() t_ours=() t_one=() t_cat=() c_copy=() c_ours=() c_one=() c_cat=() q_copy=() q_ours=() q_one=() q_cat=()
  conns=$(nbdcopy -v "$uri" null: 2>&1 > /dev/null | sed -n 's/^nbdcopy: connections=\([0-9]*\) .*/\1/p' | head -1)
  [ -n "$conns" ] || { echo "nbd-read.sh: nbdcopy -v does not say how many connections it opens" >&2; exit 1; }
  bin/ahvfs nbd cat "${extra[@]}" "$ours" | cmp - "$img" || { echo "nbd-read.sh: ahvfs nbd cat of $uri differs from the image" >&2; exit 1; }
  bin/nbdread -connections "$conns" -sha256 "${extra[@]}" "$ours" > "$work/sum"
  grep -qx "sha256 $want" "$work/sum" || { echo "nbd-read.sh: nbdread of $ours: $(cat "$work/sum"), want sha256 $want" >&2; exit 1; }
  for r in $(seq "$rounds"); do
    local -a order=(copy ours one cat)
    [ $((r % 2)) = 1 ] || order=(cat one ours copy)
    for s in "${order[@]}"; do
      case $s in
      copy)
        step nbdcopy "$uri" null:
        t_copy+=("$e") c_copy+=("$c") q_copy+=("$q")
        ;;
      ours)
        step bin/nbdread -connections "$conns" "${extra[@]}" "$ours"
        t_ours+=("$e") c_ours+=("$c") q_ours+=("$q")
        ;;
      one)
        step bin/nbdread -connections 1 -requests $((64 * conns)) "${extra[@]}" "$ours"
        t_one+=("$e") c_one+=("$c") q_one+=("$q")
        ;;
      cat)
        step bin/ahvfs nbd cat "${extra[@]}" "$ours"
        t_cat+=("$e") c_cat+=("$c") q_cat+=("$q")
        ;;
      esac
    done
  done
  local mc mo m1 mt
  mc=$(median "${t_copy[@]}") mo=$(median "${t_ours[@]}") m1=$(median "${t_one[@]}") mt=$(median "${t_cat[@]}")
  printf '\n%s: %s (nbdcopy and nbdread: %s connections)\n' "$title" "$ours" "$conns"
  row "read of the whole export" "seconds (rounds)" "median" "MB/s" "CPU s, reader / qemu-nbd (medians)"
  row "nbdcopy URI null:" "${t_copy[*]}" "$mc" "$(mbps "$size" "$mc")" "$(median "${c_copy[@]}") / $(median "${q_copy[@]}")"
  row "nbdread (package nbd, same shape)" "${t_ours[*]}" "$mo" "$(mbps "$size" "$mo")" "$(median "${c_ours[@]}") / $(median "${q_ours[@]}")"
  row "nbdread -connections 1" "${t_one[*]}" "$m1" "$(mbps "$size" "$m1")" "$(median "${c_one[@]}") / $(median "${q_one[@]}")"
  row "ahvfs nbd cat > /dev/null" "${t_cat[*]}" "$mt" "$(mbps "$size" "$mt")" "$(median "${c_cat[@]}") / $(median "${q_cat[@]}")"
  # Each round's nbdcopy / nbdread: the two ran next to each other, under
  # the same load.
  local -a pr=()
  for r in "${!t_copy[@]}"; do pr+=("$(awk -v c="${t_copy[$r]}" -v o="${t_ours[$r]}" 'BEGIN { printf "%.2f", c / o }')"); done
  awk -v c="$mc" -v o="$mo" -v u="$m1" -v t="$mt" -v p="$(median "${pr[@]}")" -v pl="${pr[*]}" -v title="$title" 'BEGIN {
    printf "%s: nbdread vs nbdcopy %.2fx (target >= 0.9x: %s); by round %s, median %.2fx; on one connection %.2fx; ahvfs nbd cat %.2fx\n",
      title, c / o, (c / o >= 0.9 ? "met" : "NOT met"), pl, p, c / u, c / t }'
}

# Plain, on a Unix socket.
serve plain --socket="$work/nbd.sock"
for _ in $(seq 100); do [ -S "$work/nbd.sock" ] && break; sleep 0.1; done
[ -S "$work/nbd.sock" ] || { cat "$work/plain.log" >&2; exit 1; }
bench "plain (Unix socket)" "nbd+unix:///?socket=$work/nbd.sock" "nbd+unix:///?socket=$work/nbd.sock"
kill "$qpid"
wait "$qpid" 2> /dev/null || true

# TLS on loopback TCP: a CA and a server certificate for 127.0.0.1.
if [ "${TLS:-1}" != 0 ]; then
  mkdir -p "$work/tls/server" "$work/tls/client"
  ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
  openssl req -x509 "${ec[@]}" -keyout "$work/tls/ca-key.pem" -out "$work/tls/server/ca-cert.pem" -subj /CN=nbd-bench-ca -days 2 2> /dev/null
  openssl req "${ec[@]}" -keyout "$work/tls/server/server-key.pem" -out "$work/tls/server.csr" -subj /CN=127.0.0.1 2> /dev/null
  printf 'subjectAltName=IP:127.0.0.1\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n' > "$work/tls/ext"
  openssl x509 -req -in "$work/tls/server.csr" -CA "$work/tls/server/ca-cert.pem" -CAkey "$work/tls/ca-key.pem" \
    -CAcreateserial -CAserial "$work/tls/ca.srl" -out "$work/tls/server/server-cert.pem" -days 2 -extfile "$work/tls/ext" 2> /dev/null
  cp "$work/tls/server/ca-cert.pem" "$work/tls/client/"
  port=$(free_port)
  serve tls --object "tls-creds-x509,id=tls0,dir=$work/tls/server,endpoint=server,verify-peer=off" --tls-creds=tls0 \
    --bind=127.0.0.1 --port="$port"
  wait_port "$port" || { cat "$work/tls.log" >&2; exit 1; }
  # libnbd takes the CA's directory in the URI; ahvfs a --ca-cert file.
  bench "TLS (TCP 127.0.0.1)" "nbds://127.0.0.1:$port/?tls-certificates=$work/tls/client" "nbds://127.0.0.1:$port/" \
    --ca-cert "$work/tls/client/ca-cert.pem"
fi

printf '\nimage: %s (%s bytes, incompressible); commit %s; machine: %s cores, %s GiB RAM, load %s at start, %s at end; %s\n' \
  "$img" "$size" "${COMMIT:-$(git rev-parse --short HEAD 2> /dev/null || echo '?')}" "$(nproc)" \
  "$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)" "$load0" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  "$([ -n "${COLD:-}" ] && echo 'page cache dropped before each step' || echo 'image in the page cache before each step')"
