#!/usr/bin/env bash
# Installs everything ltsp-make and its tests need on Debian 12, then the npm dependencies.
# Safe to run again: apt-get and npm ci skip what is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  squashfs-tools util-linux fdisk cpio kmod e2fsprogs dosfstools mtools
  dnsmasq-base nbd-server nbd-client ipxe ipxe-qemu ovmf
  qemu-system-x86 qemu-system-common qemu-utils
  openssh-server openssh-client rsync
  ltsp busybox-static python3
  mmdebstrap debootstrap
  ninja-build iproute2 procps psmisc openssl
  nfs-ganesha nfs-ganesha-vfs rpcbind initramfs-tools
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done

if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  # Package maintainer scripts must not start daemons (sshd, nbd-server, rpcbind) on this machine:
  # the tests start their own, by PID, in namespaces they create.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
  fi
  trap '((own_policy)) && rm -f "$policy"' EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
