#!/usr/bin/env bash
# Installs the Debian packages ahvfs's tests, demo and benchmarks need, when
# they are missing. Usage: tools/install-deps.sh [test|bench]
set -euo pipefail
want=(tgt qemu-utils qemu-block-extra fuse3 libnfs-utils libiscsi-bin e2fsprogs xfsprogs dosfstools mtools ntfs-3g fdisk lvm2 procps diffutils libvirt-clients libxml2-utils curl jq)
if [ "${1:-test}" = bench ]; then want+=(restic borgbackup time); fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
  exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
