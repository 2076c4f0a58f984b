// Package status renders the state of gdrbd's volumes in the three forms
// people and scripts read: DRBD 9 style `drbdadm status`, DRBD 8.4's
// /proc/drbd, and JSON. It also gives the one-word answers of `drbdadm
// role`, `cstate` and `dstate`.
//
// Every renderer is a pure function of a []Volume (what the daemon
// reports over the control socket), so the exact texts are table-tested
// here against the formats of drbdsetup-84 (user/v84/drbdsetup.c) and the
// kernel's drbd_proc.c.
//
// # Usage
//
//	vols := reply.Volumes // from the control socket
//	status.WriteDRBD9(os.Stdout, vols)
//	status.WriteProc(os.Stdout, vols)
//	status.WriteJSON(os.Stdout, vols)
//
// The resync numbers follow the kernel's integer arithmetic in bitmap
// bits (4 KiB): percent done in tenths, finish time from the progress
// since the rolling sync mark (Volume.Mark, about 18 s back), and the
// average speed since the resync started.
package status
