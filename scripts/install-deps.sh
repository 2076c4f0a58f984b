#!/usr/bin/env bash
# Installs everything gdrbd's build, tests and demo use on Debian 12:
# the real DRBD and NBD tools the compatibility tests run against, qemu and
# a Debian kernel for the kernel-NBD / kernel-DRBD guest tests, and the Go
# linters. Idempotent; run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

pkgs=(
  make gcc git ca-certificates
  drbd-utils            # drbdmeta, /lib/drbd/drbdadm-84, drbddisk
  libnbd-bin            # nbdinfo, nbdcopy, nbdsh
  qemu-utils            # qemu-io, qemu-img, qemu-nbd
  fio                   # fio with the nbd engine
  nbdkit                # reference NBD server
  nbd-client nbd-server # kernel NBD client inside the guest
  qemu-system-x86       # the guest for kernel NBD / kernel DRBD 8.4
  busybox-static cpio kmod e2fsprogs
  iproute2 procps util-linux psmisc
  heartbeat             # Heartbeat's drbddisk tests
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Go tools at pinned versions.
export PATH="$PATH:$(go env GOPATH)/bin"
command -v staticcheck >/dev/null || go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
