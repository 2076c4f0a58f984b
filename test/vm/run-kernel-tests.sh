#!/usr/bin/env bash
# `make e2e-kernel`: runs guest scripts in a qemu guest booted with a
# Debian kernel, with the static gdrbd binary as /bin/gdrbd.
#
# Usage: run-kernel-tests.sh GDRBD_STATIC [GUEST_SCRIPT...]
#        (default guest script: guest/nbd-kernel.sh)
# env:   EXTRA_MODS, EXTRA_BINS, EXTRA_DYN_BINS, EXTRA_FILES (see build-initramfs.sh),
#        TIMEOUT, SMP, MEM, APPEND, EXTRA_QEMU (see run-vm.sh), KEEP=1 keeps the temp dir.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$(realpath "${1:?usage: run-kernel-tests.sh GDRBD_STATIC [GUEST_SCRIPT...]}")
shift
[ $# -gt 0 ] || set -- "$HERE/guest/nbd-kernel.sh"
for p in qemu-system-x86_64 busybox cpio depmod modinfo mke2fs; do
  command -v "$p" >/dev/null || [ -x "/sbin/$p" ] || [ -x "/bin/$p" ] || {
    echo "run-kernel-tests: $p missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
export KROOT
KROOT=$("$HERE/fetch-kernel.sh")
T=$(mktemp -d /tmp/gdrbd-vm.XXXXXX)
[ "${KEEP:-}" = 1 ] || trap 'rm -rf "$T"' EXIT
fail=0
for script in "$@"; do
  name=$(basename "$script" .sh)
  echo "=== e2e-kernel: $name"
  start=$(date +%s)
  GUEST_SCRIPT=$script EXTRA_BINS="$BIN:gdrbd ${EXTRA_BINS:-}" \
    "$HERE/build-initramfs.sh" "$T/$name.cpio.gz"
  if LOG=$T/$name.log "$HERE/run-vm.sh" "$T/$name.cpio.gz"; then
    echo "=== e2e-kernel: $name PASS ($(( $(date +%s) - start )) s)"
  else
    echo "=== e2e-kernel: $name FAIL ($(( $(date +%s) - start )) s)"
    fail=1
  fi
done
exit $fail
