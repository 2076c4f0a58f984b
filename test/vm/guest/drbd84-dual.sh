#!/bin/sh
# Guest test: gdrbd and the real kernel DRBD 8.4.11 both Primary
# (allow-two-primaries), used the way a cluster file system uses them.
#  kernel r0 = minor 0 on loop0 at :7788; gdrbd r0 on loop1 at :7789.
#  1. connect, kernel `primary --force`: full sync; gdrbd primary too;
#  2. four writers on each node at once (O_DIRECT, 1-3 blocks at random
#     offsets), each node in its own 64 blocks of the same AL extent: the
#     packet sequence numbers (the resolver's wait for the acks numbered
#     before a write) must not stall or reorder anything;
#  3. one block handed back and forth 20 times: each node reads what the
#     other wrote, then writes it;
#  4. both nodes read the same bytes, and the kernel's online verify finds
#     nothing out of sync.
# Writes of both nodes to the same blocks at the same time are not done
# here: kernel 8.4.11 miscounts a superseded write in its barrier ack
# check ("BAD! BarrierAck #n received with n_writes=4, expected
# n_writes=3!") and drops the connection, with a kernel peer as with
# gdrbd (the gdrbd pair and the simulator test those).
set -eu
T0=$(cut -d' ' -f1 /proc/uptime)
step() { now=$(cut -d' ' -f1 /proc/uptime); echo "[$(echo "$now $T0" | awk '{printf "%6.2f", $1-$2}')s] $*"; }
S=/bin/drbdsetup-84
G="gdrbd --node gd"
fail() { echo "FAIL: $*"; cat /proc/drbd; $G status --proc || true; tail -60 /run/gdrbd/gdrbd.log 2>/dev/null; dmesg | grep -i drbd | tail -30; exit 1; }
waitk() { i=0; while ! grep -qE "$1" /proc/drbd; do i=$((i+1)); [ $i -gt ${2:-300} ] && fail "kernel: no '$1'"; sleep 0.2; done; }
waitg() { i=0; while ! $G status --proc 2>/dev/null | grep -qE "$1"; do i=$((i+1)); [ $i -gt ${2:-300} ] && fail "gdrbd: no '$1'"; sleep 0.2; done; }

step "modprobe"
modprobe crc32c_generic; modprobe drbd; modprobe loop; modprobe nbd nbds_max=2
mkdir -p /var/lock /var/run/drbd /run/drbd /var/lib/drbd
for i in 0 1; do dd if=/dev/zero of=/tmp/d$i.img bs=1M count=0 seek=32 2>/dev/null; losetup /dev/loop$i /tmp/d$i.img; done
drbdmeta --force 0 v08 /dev/loop0 internal create-md >/dev/null 2>&1 || fail "drbdmeta create-md"
cat > /etc/drbd.conf <<CONF
resource r0 {
  protocol C;
  net { allow-two-primaries yes; verify-alg md5; }
  disk { c-plan-ahead 0; resync-rate 100M; }
  on kern { device minor 0; disk /dev/loop0; address 127.0.0.1:7788; meta-disk internal; }
  on gd   { device minor 9; disk /dev/loop1; address 127.0.0.1:7789; meta-disk internal; }
}
CONF
$G create-md r0 --force >/dev/null || fail "gdrbd create-md"
$S new-resource r0; $S new-minor r0 0 0
$S attach 0 /dev/loop0 /dev/loop0 internal --c-plan-ahead=0 --resync-rate=100M
$S connect r0 ipv4:127.0.0.1:7788 ipv4:127.0.0.1:7789 --protocol=C --allow-two-primaries=yes --verify-alg=md5
$G up r0 || fail "gdrbd up"
waitk "0: cs:Connected" && waitg "cs:Connected"
$S primary 0 --force
waitk "0: cs:Connected.*ds:UpToDate/UpToDate" 600 && waitg "ds:UpToDate/UpToDate"
$G primary r0 || fail "gdrbd primary while the kernel is Primary"
waitk "0: cs:Connected ro:Primary/Primary"
step "both Primary: $(grep ' 0:' /proc/drbd | head -1)"

# writer DEV SEED BASE: 200 O_DIRECT writes of 1-3 blocks in blocks BASE..BASE+63.
writer() {
  awk -v s="$2" -v b="$3" 'BEGIN { srand(s); for (i = 0; i < 200; i++) { n = 1 + int(rand() * 3); print b + int(rand() * (65 - n)), n } }' |
    while read -r off n; do
      dd if=/dev/urandom of="$1" bs=4096 seek="$off" count="$n" oflag=direct conv=notrunc 2>/dev/null || { echo "write to $1 failed"; exit 1; }
    done
}
pids=""
for s in 1 2 3 4; do
  writer /dev/drbd0 "$s" 0 & pids="$pids $!"
  writer /dev/drbd9 "$((s + 10))" 64 & pids="$pids $!"
done
for p in $pids; do wait "$p" || fail "a writer failed"; done
step "8 writers done"

i=0
while [ $i -lt 20 ]; do
  for dev in /dev/drbd0 /dev/drbd9; do
    prev=$(dd if=$dev bs=4096 skip=200 count=1 iflag=direct 2>/dev/null | md5sum)
    [ $i -eq 0 ] || [ "$prev" = "$last" ] || fail "round $i: $dev reads $prev, the other node wrote $last"
    dd if=/dev/urandom of=/tmp/blk bs=4096 count=1 2>/dev/null
    dd if=/tmp/blk of=$dev bs=4096 seek=200 count=1 oflag=direct conv=notrunc 2>/dev/null || fail "hand-over write"
    last=$(md5sum < /tmp/blk)
  done
  i=$((i + 1))
done
step "block handed over 20 times"

K=$(dd if=/dev/drbd0 bs=4096 count=256 iflag=direct 2>/dev/null | md5sum)
D=$(dd if=/dev/drbd9 bs=4096 count=256 iflag=direct 2>/dev/null | md5sum)
step "kernel reads $K, gdrbd reads $D"
[ "$K" = "$D" ] || fail "the two Primaries read different data"
dmesg | grep -q "Concurrent writes detected" && fail "the kernel saw crossing writes that were not"
grep -q "Concurrent writes detected" /run/gdrbd/gdrbd.log 2>/dev/null && fail "gdrbd saw crossing writes that were not"
grep -q "oos:0" /proc/drbd || fail "kernel has blocks out of sync"

$G secondary r0 || fail "gdrbd secondary"
$S secondary 0
$S verify 0 || fail "verify start"
waitk "0: cs:Connected" 600
sleep 1
dmesg | grep -q "Online verify done" || fail "verify did not finish"
dmesg | grep -q "Online verify found" && fail "verify found differences"
step "online verify from the kernel: in sync"
cat /proc/drbd; $G status --proc
$G down r0; $S down r0
step "PASS"
