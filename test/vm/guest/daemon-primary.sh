#!/bin/sh
# Guest test: the gdrbd daemon as Primary on the kernel's /dev/nbdX.
#  `gdrbd create-md`, `gdrbd up r0 --primary --force`: /dev/drbd0 -> /dev/nbdX,
#  mkfs.ext4, mount, 32 MiB write, `secondary` refused while mounted,
#  umount + drop caches + remount, md5 matches, the daemon saw FLUSH and FUA
#  from the kernel (NBD_SET_FLAGS / netlink server flags worked), clean down,
#  up again: the data is still there.
set -eu
T0=$(cut -d' ' -f1 /proc/uptime)
step() { now=$(cut -d' ' -f1 /proc/uptime); echo "[$(echo "$now $T0" | awk '{printf "%6.2f", $1-$2}')s] $*"; }
fail() { echo "FAIL: $*"; gdrbd --node g1 status --proc || true; cat /run/gdrbd/gdrbd.log 2>/dev/null | tail -40; exit 1; }
G="gdrbd --node g1"
json() { $G status --json r0; }
field() { json | tr ',{}' '\n\n\n' | sed -n "s/.*\"$1\": *\"\{0,1\}\([^\"]*\)\"\{0,1\}.*/\1/p" | head -1; }

step "modprobe"
modprobe crc32c_generic; modprobe nbd nbds_max=4; modprobe ext4; modprobe loop
dd if=/dev/zero of=/tmp/d0.img bs=1M count=0 seek=192 2>/dev/null
losetup /dev/loop0 /tmp/d0.img
cat > /etc/drbd.conf <<CONF
global { usage-count no; }
resource r0 {
  protocol C;
  on g1 { device /dev/drbd0; disk /dev/loop0; address 127.0.0.1:7788; meta-disk internal; }
  on g2 { device /dev/drbd0; disk /dev/loop1; address 127.0.0.1:7789; meta-disk internal; }
}
CONF
$G create-md r0 --force >/dev/null || fail "create-md"
step "create-md done"
$G up r0 || fail "up"
[ "$($G cstate r0)" = WFConnection ] || fail "cstate after up: $($G cstate r0)"
$G primary r0 --force || fail "primary --force"
[ "$($G role r0)" = "Primary/Unknown" ] || fail "role: $($G role r0)"
dev=$(field device)
[ -b /dev/drbd0 ] || fail "no /dev/drbd0 (status device: $dev)"
step "Primary; /dev/drbd0 -> $(readlink /dev/drbd0)"
mkfs.ext4 -q -F /dev/drbd0 || fail mkfs
mkdir -p /mnt/a
mount /dev/drbd0 /mnt/a || fail mount
dd if=/dev/urandom of=/mnt/a/f bs=1M count=32 2>/dev/null
sync
A=$(md5sum < /mnt/a/f)
step "wrote 32 MiB: $A"
if $G secondary r0 2>/tmp/sec.err; then fail "secondary succeeded while mounted"; fi
grep -q "held open" /tmp/sec.err || fail "secondary refusal text: $(cat /tmp/sec.err)"
step "secondary refused while mounted: $(cat /tmp/sec.err)"
umount /mnt/a
echo 3 > /proc/sys/vm/drop_caches
mount /dev/drbd0 /mnt/a || fail remount
B=$(md5sum < /mnt/a/f)
[ "$A" = "$B" ] || fail "md5 after remount: $B"
umount /mnt/a
flushes=$(field flushes); fua=$(field fua)
step "md5 ok after remount; the daemon saw flushes=$flushes fua=$fua"
[ "${flushes:-0}" -gt 0 ] || fail "no FLUSH from the kernel"
$G status --proc
$G secondary r0 || fail secondary
$G down r0 || fail down
step "down"
$G up r0 --primary || fail "up --primary (no --force: UpToDate data)"
mount /dev/drbd0 /mnt/a || fail "mount after up"
C=$(md5sum < /mnt/a/f)
[ "$A" = "$C" ] || fail "md5 after down/up: $C"
umount /mnt/a
$G down r0 || fail "second down"
step "data kept across down/up; PASS"
