// Package e2e runs the real gdrbd binary as people run it: daemons started
// by `gdrbd up` on loop devices, two nodes on 127.0.0.1 or in two network
// namespaces joined by a veth pair, real NBD clients (nbdinfo, nbdcopy,
// qemu-io, qemu-img, fio) on the Primary's socket, kill -9 of a daemon,
// and heartbeat's drbddisk script driving gdrbd as drbdadm.
//
// The tests need root (loop devices, namespaces, bind mounts) and the
// tools scripts/install-deps.sh installs; without them they skip, and
// under CI=true they fail. Every daemon, loop device and namespace a test
// creates is removed by t.Cleanup, daemons by their pid.
package e2e
