#!/usr/bin/env bash
# gdrbd demo: a replicated pair on one machine.
#
# Two loop devices, two daemons (run dirs /tmp/gdrbd-demo.*/run-a and
# run-b, node names a and b), replicating over 127.0.0.1:7788 <-> :7789
# with the seed's drbd.conf. It walks the user story: create-md, up,
# primary --force (initial sync), write through NBD, fail over by killing
# the Primary (kill -9), promote b, read back and compare, bring a back
# and watch it resync only what changed. Everything it creates (loop
# devices, daemons by pid, files) is removed at the end, also on error.
#
# Needs root, losetup, qemu-io and nbdcopy (scripts/install-deps.sh).
# Usage: sudo scripts/demo.sh [path/to/gdrbd]   (make demo builds bin/gdrbd)
set -euo pipefail

GDRBD=${1:-$(dirname "$0")/../bin/gdrbd}
GDRBD=$(realpath "$GDRBD")
SIZE_MB=${DEMO_SIZE_MB:-256}

for tool in losetup qemu-io nbdcopy cmp; do
  command -v "$tool" >/dev/null || { echo "demo: $tool is missing (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "demo: run as root (loop devices)" >&2; exit 1; }
[ -x "$GDRBD" ] || { echo "demo: no gdrbd binary at $GDRBD (make build)" >&2; exit 1; }

DIR=$(mktemp -d /tmp/gdrbd-demo.XXXXXX)
LOOPS=()
PIDS=()

cleanup() {
  set +e
  local pid stopped=()
  for n in a b; do
    # A daemon that is exiting removes its pid file: it may be gone by now.
    pid=$(cat "$DIR/run-$n/gdrbd.pid" 2>/dev/null) && [ -n "$pid" ] && PIDS+=("$pid")
  done
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      stopped+=("$pid")
      kill "$pid" 2>/dev/null
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null
    fi
  done
  for l in "${LOOPS[@]}"; do losetup -d "$l"; done
  rm -rf "$DIR"
  echo "demo: cleaned up (daemons still running: ${stopped[*]:-none}; loop devices ${LOOPS[*]:-none}; $DIR)"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

for n in a b; do
  truncate -s "${SIZE_MB}M" "$DIR/$n.img"
  LOOPS+=("$(losetup -f --show "$DIR/$n.img")")
done
LOOP_A=${LOOPS[0]} LOOP_B=${LOOPS[1]}

cat > "$DIR/drbd.conf" <<EOF
resource r0 {
  protocol C;
  startup { wfc-timeout 0; degr-wfc-timeout 120; }
  disk { on-io-error detach; }
  net { timeout 60; connect-int 10; ping-int 10; max-buffers 2048; max-epoch-size 2048; }
  syncer { rate 200M; }
  on a { device /dev/drbd0; disk $LOOP_A; address 127.0.0.1:7788; meta-disk internal; }
  on b { device /dev/drbd0; disk $LOOP_B; address 127.0.0.1:7789; meta-disk internal; }
}
EOF

# One function per node: gdrbd with its node name and run dir.
A() { "$GDRBD" -c "$DIR/drbd.conf" --node a --run-dir "$DIR/run-a" "$@"; }
B() { "$GDRBD" -c "$DIR/drbd.conf" --node b --run-dir "$DIR/run-b" "$@"; }
URI_A="nbd+unix:///r0?socket=$DIR/run-a/r0.nbd"
URI_B="nbd+unix:///r0?socket=$DIR/run-b/r0.nbd"
export GDRBD_KERNEL_NBD=${GDRBD_KERNEL_NBD:-0}

step "the configuration (the seed's r0, two nodes on this machine)"
cat "$DIR/drbd.conf"

step "create-md on both nodes"
A create-md r0 --force
B create-md r0 --force

step "up on both: daemons start, disks attach, the nodes connect"
show A up r0
show B up r0
A wait-connect r0 --timeout 30
show A status

step "primary --force on a: a is the initial sync source"
show A primary r0 --force
A wait-sync r0
show A status --proc
show B status

step "write through a's NBD socket"
qemu-io -f raw -c "write -P 0x5a 0 16M" -c "flush" "$URI_A" | tail -1
head -c 16M /dev/zero | tr '\0' '\132' > "$DIR/expect.bin"

step "fail over: kill -9 a's daemon (a crashed Primary), promote b"
show kill -9 "$(cat "$DIR/run-a/gdrbd.pid")"
PIDS+=("$(cat "$DIR/run-a/gdrbd.pid")")
for _ in $(seq 100); do [ "$(B cstate r0)" != Connected ] && break; sleep 0.1; done
show B cstate r0
show B primary r0
nbdcopy "$URI_B" "$DIR/got.bin"
show cmp -n 16M "$DIR/expect.bin" "$DIR/got.bin" && echo "b has every byte a acknowledged"

step "b writes 8 MiB while a is away: only those are out of sync"
qemu-io -f raw -c "write -P 0xa5 64M 8M" -c "flush" "$URI_B" | tail -1
show B status --proc

step "a comes back (its crashed metadata is recovered) and resyncs only what changed"
show A up r0
A wait-connect r0 --timeout 60
B wait-sync r0
echo "(the resync covered b's 8 MiB plus the 4 MiB activity-log extents a had hot when it crashed)"
show A status
show A role r0
show A dstate r0

step "b hands back to a: demote b, promote a, read what b wrote"
show B secondary r0
show A primary r0
qemu-io -f raw -c "read -P 0xa5 64M 8M" -c "read -P 0x5a 0 16M" "$URI_A" | grep -E "read|failed"

step "down on both; each daemon exits after its last resource"
show A down r0
show B down r0
echo
echo "demo: done"
