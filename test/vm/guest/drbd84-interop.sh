#!/bin/sh
# Guest test: gdrbd paired with the real kernel DRBD 8.4.11 over 127.0.0.1.
#  kernel r0 = minor 0 on loop0 at :7788; gdrbd r0 on loop1 at :7789 (sha1 auth).
#  1. connect, kernel `primary --force`: full sync kernel -> gdrbd;
#  2. ext4 + 16 MiB on /dev/drbd0 (kernel), demote; gdrbd primary: same md5 via /dev/nbd0;
#  3. gdrbd writes a second file, demotes; kernel primary reads it;
#  4. gdrbd disconnects, the kernel writes, reconnect: bitmap resync to gdrbd;
#  5. online verify from the kernel side finds nothing out of sync.
set -eu
T0=$(cut -d' ' -f1 /proc/uptime)
step() { now=$(cut -d' ' -f1 /proc/uptime); echo "[$(echo "$now $T0" | awk '{printf "%6.2f", $1-$2}')s] $*"; }
S=/bin/drbdsetup-84
G="gdrbd --node gd"
fail() { echo "FAIL: $*"; cat /proc/drbd; $G status --proc || true; tail -60 /run/gdrbd/gdrbd.log 2>/dev/null; dmesg | grep -i drbd | tail -30; exit 1; }
waitk() { i=0; while ! grep -qE "$1" /proc/drbd; do i=$((i+1)); [ $i -gt ${2:-300} ] && fail "kernel: no '$1'"; sleep 0.2; done; }
waitg() { i=0; while ! $G status --proc 2>/dev/null | grep -qE "$1"; do i=$((i+1)); [ $i -gt ${2:-300} ] && fail "gdrbd: no '$1'"; sleep 0.2; done; }

step "modprobe"
modprobe crc32c_generic; modprobe drbd; modprobe loop; modprobe ext4; modprobe nbd nbds_max=2
mkdir -p /var/lock /var/run/drbd /run/drbd /var/lib/drbd
head -1 /proc/drbd
for i in 0 1; do dd if=/dev/zero of=/tmp/d$i.img bs=1M count=0 seek=64 2>/dev/null; losetup /dev/loop$i /tmp/d$i.img; done
drbdmeta --force 0 v08 /dev/loop0 internal create-md >/dev/null 2>&1 || fail "drbdmeta create-md"
cat > /etc/drbd.conf <<CONF
resource r0 {
  protocol C;
  net { cram-hmac-alg sha1; shared-secret "gdrbd-interop"; verify-alg md5; }
  disk { c-plan-ahead 0; resync-rate 100M; }
  on kern { device minor 0; disk /dev/loop0; address 127.0.0.1:7788; meta-disk internal; }
  on gd   { device minor 9; disk /dev/loop1; address 127.0.0.1:7789; meta-disk internal; }
}
CONF
$G create-md r0 --force >/dev/null || fail "gdrbd create-md"
$S new-resource r0; $S new-minor r0 0 0
$S attach 0 /dev/loop0 /dev/loop0 internal --c-plan-ahead=0 --resync-rate=100M
$S connect r0 ipv4:127.0.0.1:7788 ipv4:127.0.0.1:7789 --protocol=C --cram-hmac-alg=sha1 --shared-secret=gdrbd-interop --verify-alg=md5
$G up r0 || fail "gdrbd up"
waitk "0: cs:Connected" && waitg "cs:Connected"
step "connected: kernel $(grep ' 0:' /proc/drbd | head -1)"

$S primary 0 --force
waitk "0: cs:Connected.*ds:UpToDate/UpToDate" 600 && waitg "ds:UpToDate/UpToDate"
step "full sync kernel -> gdrbd done"
mkfs.ext4 -q -F /dev/drbd0; mkdir -p /mnt/a; mount /dev/drbd0 /mnt/a
dd if=/dev/urandom of=/mnt/a/f1 bs=1M count=16 2>/dev/null; A=$(md5sum < /mnt/a/f1); umount /mnt/a
$S secondary 0
step "kernel wrote ext4 + 16 MiB ($A), demoted"

$G primary r0 || fail "gdrbd primary"
mount /dev/drbd9 /mnt/a || fail "mount gdrbd's device"
B=$(md5sum < /mnt/a/f1); [ "$A" = "$B" ] || fail "gdrbd read $B"
dd if=/dev/urandom of=/mnt/a/f2 bs=1M count=8 2>/dev/null; C=$(md5sum < /mnt/a/f2); umount /mnt/a
$G secondary r0 || fail "gdrbd secondary"
step "gdrbd read the kernel's file, wrote f2 ($C), demoted"

waitk "0: cs:Connected ro:Secondary/Secondary"
$S primary 0 || fail "kernel primary"
mount /dev/drbd0 /mnt/a; D=$(md5sum < /mnt/a/f2); [ "$C" = "$D" ] || fail "kernel read $D"
step "kernel read gdrbd's file"

$G disconnect r0
waitk "0: cs:WFConnection"
dd if=/dev/urandom of=/mnt/a/f3 bs=1M count=4 2>/dev/null; E=$(md5sum < /mnt/a/f3); sync; umount /mnt/a
oos=$(sed -n 's/.*oos:\([0-9]*\).*/\1/p' /proc/drbd | head -1)
step "gdrbd disconnected; kernel wrote 4 MiB (oos ${oos} KiB)"
[ "${oos:-0}" -gt 0 ] || fail "no out-of-sync after disconnected writes"
$G connect r0 || fail "gdrbd connect"
waitk "0: cs:Connected.*ds:UpToDate/UpToDate" 600 && waitg "cs:Connected.*ds:UpToDate/UpToDate"
grep -q "oos:0" /proc/drbd || fail "kernel still out of sync"
step "bitmap resync done"
$S secondary 0
$G primary r0 || fail "gdrbd primary 2"
mount -o ro /dev/drbd9 /mnt/a; F=$(md5sum < /mnt/a/f3); umount /mnt/a
[ "$E" = "$F" ] || fail "gdrbd read resynced f3: $F"
$G secondary r0
step "gdrbd has the resynced file"

$S verify 0 || fail "verify start"
waitk "0: cs:Connected" 600
sleep 1
dmesg | grep -q "Online verify done" || fail "verify did not finish"
dmesg | grep -q "Online verify found" && fail "verify found differences"
step "online verify from the kernel: in sync"
cat /proc/drbd; $G status --proc
$G down r0; $S down r0
step "PASS"
