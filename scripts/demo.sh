#!/usr/bin/env bash
# Runs ltsp-make on a small built-in demo: a tiny chroot under ./demo, with the base, TFTP, home
# and etc roots all under ./demo. Nothing outside ./demo is touched.
set -euo pipefail
cd "$(dirname "$0")/.."
demo=$PWD/demo
chroot=$demo/srv/ltsp/demo

if [[ ! -d $chroot/proc ]]; then
  mkdir -p "$chroot"/{bin,boot,dev,etc/ssh,home/alice,proc,root,run,sys,tmp,var/log/apt,var/lib/dpkg,usr/share/doc}
  cp /bin/busybox "$chroot/bin/busybox"
  ln -sf busybox "$chroot/bin/sh"
  printf 'PRETTY_NAME="ltsp-make demo"\nID=demo\n' >"$chroot/etc/os-release"
  printf 'root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$chroot/etc/passwd"
  printf 'root:x:0:\nalice:x:1000:\nnogroup:x:65534:\n' >"$chroot/etc/group"
  printf 'root:$6$demo$hash:19000:0:99999:7:::\nalice:$6$demo$alicehash:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n' >"$chroot/etc/shadow"
  printf 'demo host key (private)\n' >"$chroot/etc/ssh/ssh_host_ed25519_key"
  printf 'UUID=1234 / ext4 defaults 0 1\n' >"$chroot/etc/fstab"
  printf 'boot log\n' >"$chroot/var/log/syslog"
  printf 'secret\n' >"$chroot/home/alice/notes.txt"
  : >"$chroot/var/lib/dpkg/lock"
  # Stand-ins for a kernel and its initramfs; the demo is not booted.
  head -c 65536 /dev/urandom >"$chroot/boot/vmlinuz-6.1.0-demo-amd64"
  head -c 32768 /dev/urandom >"$chroot/boot/initrd.img-6.1.0-demo-amd64"
  ln -sf boot/vmlinuz-6.1.0-demo-amd64 "$chroot/vmlinuz"
  ln -sf boot/initrd.img-6.1.0-demo-amd64 "$chroot/initrd.img"
fi
if [[ ! -f $demo/etc/passwd ]]; then
  mkdir -p "$demo"/{etc/ltsp,etc/ssh,home,srv/tftp}
  printf 'root:x:0:0:root:/root:/bin/bash\nteacher:x:1000:1000:Teacher:/home/teacher:/bin/bash\n' >"$demo/etc/passwd"
  printf 'root:x:0:\nteacher:x:1000:\n' >"$demo/etc/group"
  printf 'UID_MIN 1000\nUID_MAX 60000\nGID_MIN 1000\nGID_MAX 60000\n' >"$demo/etc/login.defs"
  printf 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDemoDemoDemoDemoDemoDemoDemoDemoDemoDemoDemo root@demo\n' >"$demo/etc/ssh/ssh_host_ed25519_key.pub"
  printf '[clients]\n# LTSP client settings\n' >"$demo/etc/ltsp/ltsp.conf"
  printf 'nameserver 192.168.67.1\n' >"$demo/etc/resolv.conf"
fi

exec node bin/ltsp-make.js --config ltspfile.ts --cache-dir "$demo/cache" \
  --base-dir "$demo/srv/ltsp" --tftp-dir "$demo/srv/tftp" --home-dir "$demo/home" --etc-dir "$demo/etc" "$@"
