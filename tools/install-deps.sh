#!/usr/bin/env bash
# Installs the Debian packages ahvfs's tests, demo and benchmarks need, when
# they are missing. Usage: tools/install-deps.sh [test|bench]
set -euo pipefail
want=(tgt qemu-utils qemu-block-extra qemu-system-x86 busybox-static syslinux syslinux-common syslinux-efi ovmf linux-image-amd64 cpio fuse3 libnfs-utils libiscsi-bin e2fsprogs xfsprogs dosfstools mtools ntfs-3g fdisk lvm2 procps diffutils libvirt-clients libxml2-utils curl jq openssl systemd chromium fonts-liberation nbdkit libnbd-bin)
if [ "${1:-test}" = bench ]; then want+=(restic borgbackup time rsync); fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
  else
    echo "install-deps: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

tools="${AHVFS_TOOLS_DIR:-$HOME/.cache/ahvfs-tools}"
# Debian's signed shim and GRUB for the Secure Boot test image, unpacked
# (not installed: their scripts would set up this machine's own boot).
sb="$tools/secureboot"
if [ ! -f "$sb/usr/lib/shim/shimx64.efi.signed" ] || [ ! -f "$sb/usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: Debian's signed shim and GRUB are missing from $sb (run as root once)" >&2
  else
    echo "install-deps: unpacking Debian's signed shim and GRUB into $sb (once)" >&2
    dl=$(mktemp -d)
    chmod 755 "$dl"
    get() { (cd "$dl" && apt-get download shim-signed grub-efi-amd64-signed > /dev/null 2>&1); }
    get || { apt-get update -qq && get; } || echo "install-deps: could not download shim-signed and grub-efi-amd64-signed" >&2
    mkdir -p "$sb"
    for d in "$dl"/*.deb; do [ -f "$d" ] && dpkg-deb -x "$d" "$sb"; done
    rm -rf "$dl"
  fi
fi

# promtool (Debian's prometheus package, unpacked, not installed: the
# package would set up a Prometheus server on this machine): the daemon's
# /metrics tests check their output with `promtool check metrics`.
prom="$tools/prometheus"
if [ ! -x "$prom/usr/bin/promtool" ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: promtool is missing from $prom (run as root once)" >&2
  else
    echo "install-deps: unpacking Debian's prometheus package (promtool) into $prom (once)" >&2
    dl=$(mktemp -d)
    chmod 755 "$dl"
    get() { (cd "$dl" && apt-get download prometheus > /dev/null 2>&1); }
    get || { apt-get update -qq && get; } || echo "install-deps: could not download prometheus" >&2
    mkdir -p "$prom"
    for d in "$dl"/*.deb; do [ -f "$d" ] && dpkg-deb -x "$d" "$prom"; done
    rm -rf "$dl"
  fi
fi

# Go-built test peers, built from the module proxy once and cached by
# version (the Makefile passes their paths to the tests).
# versitygw: the real S3-compatible server the S3 tests run against
# (Apache-2.0; ~3.5 min cold build on 2 cores, then cached).
vgw="$tools/versitygw-v1.8.0/versitygw"
if [ ! -x "$vgw" ]; then
  echo "install-deps: building versitygw v1.8.0 into $(dirname "$vgw") (once; a few minutes)" >&2
  mkdir -p "$(dirname "$vgw")"
  GOBIN="$(dirname "$vgw")" GOFLAGS=-mod=mod go install -ldflags="-s -w" github.com/versity/versitygw/cmd/versitygw@v1.8.0
fi
