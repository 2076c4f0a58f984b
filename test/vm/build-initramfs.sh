#!/usr/bin/env bash
# Builds a small gzip'd newc initramfs for the test guest: busybox-static,
# kernel modules (+ their dependencies, resolved with modinfo against the
# fetched kernel), mke2fs with its shared libraries, the project's init
# and the guest script as /test.sh.
#
# Usage: build-initramfs.sh OUT.cpio.gz
# env:   KROOT          unpacked kernel package (fetch-kernel.sh prints it)   [required]
#        GUEST_SCRIPT   script run by /init as /test.sh                        [required]
#        MODS           modules to include (default: nbd ext4 crc32c_generic)
#        EXTRA_MODS     more modules (e.g. "drbd loop")
#        EXTRA_BINS     static binaries, copied to /bin under their own names
#                       ("SRC:NAME" renames, e.g. bin/gdrbd-static:gdrbd)
#        EXTRA_DYN_BINS dynamic binaries, copied to /bin with their ldd libraries
#        EXTRA_FILES    "SRC:DEST" pairs copied into the image
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:?usage: build-initramfs.sh OUT.cpio.gz}
: "${KROOT:?KROOT (unpacked kernel) is required}"
: "${GUEST_SCRIPT:?GUEST_SCRIPT is required}"
KVER=$(ls "$KROOT/lib/modules" | sort -V | tail -1)
R=$(mktemp -d)
trap 'rm -rf "$R"' EXIT
mkdir -p "$R"/{bin,sbin,etc,proc,sys,dev,tmp,mnt,run,lib/modules/$KVER,lib64,usr/bin,usr/sbin}
cp /bin/busybox "$R/bin/busybox"
for a in sh mount; do ln -s busybox "$R/bin/$a"; done

declare -A seen
addmod() {
  local m=$1 f d
  [ -n "${seen[$m]:-}" ] && return 0
  seen[$m]=1
  f=$(modinfo -b "$KROOT" -k "$KVER" -F filename "$m" 2>/dev/null | head -1) || true
  case "$f" in
    ""|"(builtin)") return 0 ;;  # built into the kernel
  esac
  f=${f#"$KROOT"}
  mkdir -p "$R/$(dirname "$f")"
  cp "$KROOT/$f" "$R/$f"
  for d in $(modinfo -b "$KROOT" -k "$KVER" -F depends "$m" | tr ',' ' '); do addmod "$d"; done
}
for m in ${MODS:-nbd ext4 crc32c_generic} ${EXTRA_MODS:-}; do addmod "$m"; done
cp "$KROOT/lib/modules/$KVER"/modules.{order,builtin,builtin.modinfo} "$R/lib/modules/$KVER/" 2>/dev/null || true
depmod -b "$R" "$KVER"

addbin() { # SRC DEST: a dynamic binary and the libraries ldd names
  local b=$1 dst=$2 l
  cp "$b" "$R$dst"
  for l in $(ldd "$b" | grep -oE '/[^ ]+\.so[^ ]*'); do
    mkdir -p "$R$(dirname "$l")"
    cp -L "$l" "$R$l"
  done
}
addbin "$(command -v mke2fs || echo /sbin/mke2fs)" /sbin/mke2fs
ln -s mke2fs "$R/sbin/mkfs.ext4"
cp /etc/mke2fs.conf "$R/etc/mke2fs.conf"
for b in ${EXTRA_BINS:-}; do
  src=${b%%:*}; name=$(basename "$src"); [ "$src" != "$b" ] && name=${b#*:}
  cp "$src" "$R/bin/$name"
done
for b in ${EXTRA_DYN_BINS:-}; do addbin "$b" "/bin/$(basename "$b")"; done
for p in ${EXTRA_FILES:-}; do mkdir -p "$R/$(dirname "${p#*:}")"; cp "${p%%:*}" "$R/${p#*:}"; done
echo 'root:x:0:0:root:/:/bin/sh' > "$R/etc/passwd"
echo 'root:x:0:' > "$R/etc/group"
cp "$HERE/init" "$R/init"
cp "$GUEST_SCRIPT" "$R/test.sh"
chmod +x "$R/init" "$R/test.sh"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT"
echo "initramfs $OUT ($(du -h "$OUT" | cut -f1)) kernel $KVER modules: ${!seen[*]}" >&2
