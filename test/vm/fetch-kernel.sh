#!/usr/bin/env bash
# Fetches the Debian kernel the guest boots (vmlinuz + /lib/modules) into a
# cache folder and prints that folder. The host's own kernel is never used:
# it may lack nbd.ko and drbd.ko, and CI must not depend on what happens to
# be installed. `apt-get download` + `dpkg -x` needs no root-owned install
# and leaves the host's /boot and /lib/modules alone.
#
# Usage: fetch-kernel.sh            -> prints KROOT (e.g. test/vm/.cache/kernel-6.1.0-56-amd64)
# env:   KPKG   kernel image package (default: what linux-image-amd64 depends on)
#        CACHE  cache folder (default: test/vm/.cache)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${CACHE:-$HERE/.cache}
mkdir -p "$CACHE"

resolve() { apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'; }
KPKG=${KPKG:-}
if [ -z "$KPKG" ]; then
  # A cached kernel is good enough when apt has no lists (offline rerun).
  KPKG=$(resolve || true)
  if [ -z "$KPKG" ]; then
    apt-get update -qq >&2 || true
    KPKG=$(resolve || true)
  fi
  if [ -z "$KPKG" ]; then
    cached=$(ls -d "$CACHE"/kernel-*/ 2>/dev/null | sort -V | tail -1 || true)
    [ -n "$cached" ] || { echo "fetch-kernel: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 1; }
    echo "${cached%/}"; exit 0
  fi
fi
KVER=${KPKG#linux-image-}
KROOT=$CACHE/kernel-$KVER
if [ ! -e "$KROOT/.complete" ]; then
  rm -rf "$KROOT" "$CACHE/dl"; mkdir -p "$CACHE/dl"
  (cd "$CACHE/dl" && apt-get download -q -o APT::Sandbox::User=root "$KPKG" >&2) || {
    apt-get update -qq >&2; (cd "$CACHE/dl" && apt-get download -q -o APT::Sandbox::User=root "$KPKG" >&2); }
  mkdir -p "$KROOT.tmp"
  dpkg -x "$CACHE"/dl/"$KPKG"_*.deb "$KROOT.tmp"
  # Only vmlinuz and the modules are used; drop the rest to keep the cache small.
  rm -rf "$KROOT.tmp/usr" "$CACHE/dl"
  # dpkg -x does not run the postinst that would call depmod.
  depmod -b "$KROOT.tmp" "$KVER"
  mv "$KROOT.tmp" "$KROOT"
  touch "$KROOT/.complete"
fi
echo "$KROOT"
