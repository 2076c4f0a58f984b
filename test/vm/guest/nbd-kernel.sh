#!/bin/sh
# Guest test: the kernel NBD client against gdrbd's in-process server.
#  A) netlink attach: mkfs.ext4, mount, 32 MiB write, in-use while mounted,
#     umount + drop caches + remount, md5 matches; the server saw FLUSHes.
#  B) ioctl fallback attach: mount read-only, the same md5.
#  C) daemon restart: kill -9 the server of a netlink device, a new server
#     takes over with RECONFIGURE, the same md5 after dropping caches.
set -eu
T0=$(cut -d' ' -f1 /proc/uptime)
step() { now=$(cut -d' ' -f1 /proc/uptime); echo "[$(echo "$now $T0" | awk '{printf "%6.2f", $1-$2}')s] $*"; }
fail() { echo "FAIL: $*"; for f in /tmp/serve*.log; do echo "--- $f"; cat "$f"; done; exit 1; }

# wait_for FILE PATTERN: until a line matches (10 s).
wait_for() {
  i=0
  until grep -q "$2" "$1" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "no '$2' in $1"
    sleep 0.1
  done
}
# stats PID LOG: ask the server for its counters; prints the newest line.
stats() {
  n=$(grep -c 'stats' "$2" || true)
  kill -USR1 "$1"
  i=0
  while [ "$(grep -c 'stats' "$2" || true)" -le "$n" ]; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "no stats from $1"
    sleep 0.1
  done
  grep 'stats' "$2" | tail -1
}
field() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
stop() { kill -TERM "$1"; wait "$1" || fail "server $1 exited with $?"; }

step "modprobe nbd ext4"
modprobe crc32c_generic
modprobe nbd nbds_max=4
modprobe ext4
dd if=/dev/zero of=/tmp/disk.img bs=1M count=0 seek=256 2>/dev/null

step "A: gdrbd nbd-serve, netlink attach"
gdrbd nbd-serve --file /tmp/disk.img --kernel auto --unix /tmp/nbd.sock >/tmp/serveA.log 2>&1 &
A=$!
wait_for /tmp/serveA.log 'nbd-serve: ready'
DEV=$(field "$(grep ready /tmp/serveA.log)" device)
grep -q 'via=netlink' /tmp/serveA.log || fail "not attached through netlink"
step "A: attached $DEV ($(cat /sys/block/${DEV#/dev/}/size) sectors, queue $(cat /sys/block/${DEV#/dev/}/queue/logical_block_size) B blocks)"
[ "$(cat /sys/block/${DEV#/dev/}/size)" = 524288 ] || fail "size"
# Throughput figures for the log (TCG: slow, but comparable run to run).
step "A: raw write 16 MiB O_DIRECT"; dd if=/dev/zero of="$DEV" bs=1M count=16 oflag=direct 2>&1 | tail -1
step "A: raw read 16 MiB O_DIRECT"; dd if="$DEV" of=/dev/null bs=1M count=16 iflag=direct 2>&1 | tail -1
step "A: mkfs.ext4"; mkfs.ext4 -q -F "$DEV"
mkdir -p /mnt/a; mount -t ext4 "$DEV" /mnt/a
step "A: write 32 MiB + sync"
dd if=/dev/urandom of=/mnt/a/f bs=1M count=32 2>/dev/null; sync
S=$(stats $A /tmp/serveA.log); echo "   $S"
[ "$(field "$S" inuse)" = true ] || fail "mounted device not reported in use"
echo "$S" | grep -q 'mounted on /mnt/a' || fail "mount not seen"
MD5A=$(md5sum < /mnt/a/f)
umount /mnt/a
echo 3 > /proc/sys/vm/drop_caches
mount -t ext4 "$DEV" /mnt/a; MD5B=$(md5sum < /mnt/a/f); umount /mnt/a
[ "$MD5A" = "$MD5B" ] || fail "md5 after remount: $MD5A != $MD5B"
echo "   md5 after remount OK ($MD5A)"
S=$(stats $A /tmp/serveA.log); echo "   $S"
[ "$(field "$S" inuse)" = false ] || fail "unmounted device still reported in use"
[ "$(field "$S" kernel-connected)" = true ] || fail "netlink STATUS does not say connected"
sleep 30 < "$DEV" & HOLD=$!
i=0
until echo "$(stats $A /tmp/serveA.log)" | grep -q "open by pid $HOLD"; do
  i=$((i + 1)); [ $i -gt 30 ] && fail "plain opener $HOLD not seen"
  sleep 0.2
done
echo "   plain opener $HOLD seen"
kill $HOLD; wait $HOLD 2>/dev/null || true
step "A: detach"
stop $A
S=$(grep stats /tmp/serveA.log | tail -1); echo "   final $S"
[ "$(field "$S" flushes)" -gt 0 ] || fail "the kernel sent no FLUSH (SERVER_FLAGS lost?)"
[ "$(field "$S" writes)" -gt 0 ] || fail "no writes"
[ "$(field "$S" errors)" = 0 ] || fail "error replies"
i=0
until [ "$(cat /sys/block/${DEV#/dev/}/size)" = 0 ]; do
  i=$((i + 1)); [ $i -gt 50 ] && fail "$DEV still has a size after detach"
  sleep 0.1
done

step "B: ioctl fallback attach"
gdrbd nbd-serve --file /tmp/disk.img --kernel auto --ioctl >/tmp/serveB.log 2>&1 &
B=$!
wait_for /tmp/serveB.log 'nbd-serve: ready'
grep -q 'via=ioctl' /tmp/serveB.log || fail "not attached through ioctls"
DEV=$(field "$(grep ready /tmp/serveB.log)" device)
step "B: attached $DEV"
mount -t ext4 -o ro "$DEV" /mnt/a; MD5C=$(md5sum < /mnt/a/f); umount /mnt/a
[ "$MD5A" = "$MD5C" ] || fail "md5 through ioctl attach: $MD5C"
echo "   md5 through ioctl attach OK"
stop $B
S=$(grep stats /tmp/serveB.log | tail -1); echo "   final $S"
[ "$(field "$S" reads)" -gt 0 ] || fail "no reads"

step "C: netlink attach, then kill -9 the server"
gdrbd nbd-serve --file /tmp/disk.img --kernel 2 --dead-conn-timeout 60s >/tmp/serveC1.log 2>&1 &
C1=$!
wait_for /tmp/serveC1.log 'nbd-serve: ready'
kill -9 $C1; wait $C1 2>/dev/null || true
step "C: restarted server takes over /dev/nbd2 (RECONFIGURE)"
gdrbd nbd-serve --file /tmp/disk.img --reconnect 2 >/tmp/serveC2.log 2>&1 &
C2=$!
wait_for /tmp/serveC2.log 'nbd-serve: ready'
echo 3 > /proc/sys/vm/drop_caches
mount -t ext4 -o ro /dev/nbd2 /mnt/a; MD5D=$(md5sum < /mnt/a/f); umount /mnt/a
[ "$MD5A" = "$MD5D" ] || fail "md5 after reconnect: $MD5D"
echo "   md5 after reconnect OK"
stop $C2
step "done"
