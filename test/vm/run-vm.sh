#!/usr/bin/env bash
# Boots the fetched kernel with an initramfs under qemu (TCG: no KVM
# here), prints the console, and exits 0 iff the guest reported
# "GUEST-RESULT rc=0".
#
# Usage: run-vm.sh INITRD
# env:   KROOT (required), TIMEOUT seconds (default 300), SMP (2), MEM (1024),
#        APPEND (extra kernel command line), EXTRA_QEMU (extra qemu args),
#        ACCEL (tcg; kvm where it works), LOG (console copy, default a temp file)
set -uo pipefail
INITRD=${1:?usage: run-vm.sh INITRD}
: "${KROOT:?KROOT (unpacked kernel) is required}"
KVER=$(ls "$KROOT/lib/modules" | sort -V | tail -1)
ACCEL=${ACCEL:-tcg}
CPU=max; [ "$ACCEL" = kvm ] && CPU=host
LOG=${LOG:-$(mktemp /tmp/gdrbd-vm.XXXXXX.log)}
# shellcheck disable=SC2086
timeout "${TIMEOUT:-300}" qemu-system-x86_64 -machine "q35,accel=$ACCEL" -cpu "$CPU" \
  -smp "${SMP:-2}" -m "${MEM:-1024}" -nographic -no-reboot -nic none ${EXTRA_QEMU:-} \
  -kernel "$KROOT/boot/vmlinuz-$KVER" -initrd "$INITRD" \
  -append "console=ttyS0 panic=-1 quiet ${APPEND:-}" </dev/null | tee "$LOG"
grep -q 'GUEST-RESULT rc=0' "$LOG"
