// Package nbd is gdrbd's NBD front end: a fixed-newstyle NBD server for
// the Primary's replicated volume, and the Linux kernel attach of
// /dev/nbdX to that server.
//
// The server is written against the protocol's rules that protect data:
// a READ is answered only after the read completed, FLUSH and FUA reach
// the Backend before the reply, every request of a connection can be in
// flight at once and replies leave in completion order, and
// CAN_MULTI_CONN is advertised because Backend.Flush covers writes from
// every connection.
//
// # Usage
//
//	srv, err := nbd.NewServer(nbd.Config{Backend: backend, Name: "r0", Logger: log})
//	l, err := nbd.ListenUnix("/run/gdrbd/r0.nbd")   // mode 0600
//	go srv.Serve(l)                                  // also nbd.ListenTCP("127.0.0.1:10809")
//	dev, err := nbd.Attach(ctx, srv, nbd.AttachOptions{Index: -1})
//	switch {
//	case errors.Is(err, nbd.ErrNoKernelNBD):
//		// no /dev/nbd*: serve the socket only
//	case err == nil:
//		_ = nbd.LinkDRBD("/dev", dev.Path(), 0, "r0", 0) // /dev/drbd0, /dev/drbd/by-res/r0/0
//	}
//	// Demotion: refuse while the device is in use, then fence and drain.
//	if u, _ := nbd.DeviceUsage(dev.Path()); u.InUse() || srv.Connections() > 1 { ... }
//	srv.Refuse(nbd.ErrReadOnly)
//	_ = srv.Drain(ctx)
//	_ = dev.Detach()
//	_ = srv.Close()
//
// The Backend is the replication driver on a Primary; DeviceBackend
// exports a plain blockdev.Device (tests, the hidden `gdrbd nbd-serve`).
// Counters (Stats) and the number of open connections (Connections) can
// be read at any time.
//
// # Handshake (fixed newstyle only)
//
//	S: "NBDMAGIC" | "IHAVEOPT" | u16 FIXED_NEWSTYLE|NO_ZEROES
//	C: u32 client flags (unknown bits: hard disconnect)
//	C: "IHAVEOPT" | u32 option | u32 length | data       (length > 64 KiB: hard disconnect)
//	S: u64 0x3e889045565a9 | u32 option | u32 reply type | u32 length | data
//
// Options: INFO and GO (replies NBD_INFO_EXPORT, NBD_INFO_BLOCK_SIZE
// min 512 or 4096 / preferred 4096 / max 32 MiB, NBD_INFO_NAME and
// NBD_INFO_DESCRIPTION when asked, then ACK; GO enters transmission),
// EXPORT_NAME (size, flags, 124 zeroes unless NO_ZEROES; an unknown name
// is a hard disconnect as the spec requires), LIST, ABORT,
// STRUCTURED_REPLY. STARTTLS, the meta-context options and unknown
// options get ERR_UNSUP and the haggling continues. The export is found
// under Config.Name and under the empty (default) name.
//
// Transmission flags: HAS_FLAGS, SEND_FLUSH, SEND_FUA, SEND_TRIM,
// SEND_WRITE_ZEROES, SEND_FAST_ZERO, SEND_CACHE, CAN_MULTI_CONN,
// READ_ONLY when configured, SEND_DF once structured replies are on.
//
// # Transmission
//
// Request (28 bytes, then the payload for WRITE):
//
//	 0          4       6       8                 16                24       28
//	+----------+-------+-------+-----------------+-----------------+--------+
//	|0x25609513| flags | type  | cookie          | offset          | length |
//	+----------+-------+-------+-----------------+-----------------+--------+
//
// Simple reply (16 bytes, then the data of a successful READ):
//
//	+----------+----------+-----------------+
//	|0x67446698| error    | cookie          |
//	+----------+----------+-----------------+
//
// Structured reply chunk (20 bytes, then the payload):
//
//	+----------+-------+-------+-----------------+--------+
//	|0x668e33ef| flags | type  | cookie          | length |
//	+----------+-------+-------+-----------------+--------+
//	OFFSET_DATA (1): u64 offset | data       ERROR (32769): u32 error | u16 len | message
//
// With structured replies negotiated, a READ is one OFFSET_DATA chunk
// with the DONE flag (a zero-length READ a NONE chunk), every error is an
// ERROR chunk with a message, and other successes are simple replies.
// The kernel gets simple replies only.
//
// Concurrency per connection: a reader goroutine decodes requests and
// reads WRITE payloads straight into pooled 4096-aligned buffers (never
// copied again), a goroutine per request calls the Backend (at most
// Config.MaxInFlight requests and Config.MaxInFlightBytes payload bytes
// at once; beyond that the reader stops reading), and one writer sends
// replies, batching whatever is ready into a single writev with READ
// data taken from the buffer the backend filled. NBD_CMD_DISC stops the
// reader; in-flight requests finish and are answered before the socket
// closes. Server.Close does the same for every connection.
//
// # Errors
//
// Requests are checked before the Backend sees them, in this order:
//
//	condition                                      error
//	unknown command (incl. BLOCK_STATUS)           EINVAL
//	flag not valid for the command                 EINVAL
//	READ/WRITE length > 32 MiB                     EINVAL (READ with structured replies: EOVERFLOW);
//	                                               a refused WRITE payload is read and dropped
//	write/trim/zeroes on a read-only export        EPERM
//	offset or length not a multiple of the
//	  advertised minimum block size                EINVAL (enforced whether or not the client
//	                                               asked for block sizes; the spec lets the
//	                                               server error such requests cleanly)
//	WRITE/WRITE_ZEROES past the end                ENOSPC
//	READ/TRIM/CACHE past the end                   EINVAL
//	Server.Refuse(reason) in force                 errno of reason (below)
//	bad request magic, truncated header/payload    hard disconnect
//
// Backend errors map by errors.Is:
//
//	ErrReadOnly, blockdev.ErrReadOnly, EPERM, EACCES, EROFS   EPERM
//	ErrShutdown, context.Canceled, ESHUTDOWN                   ESHUTDOWN (the client must disconnect)
//	ErrNotFast (FAST_ZERO that would be slow), EOPNOTSUPP      ENOTSUP
//	blockdev.ErrOutOfRange                                     ENOSPC for writes, else EINVAL
//	ENOSPC, EDQUOT, EFBIG                                      ENOSPC
//	ENOMEM                                                     ENOMEM
//	EINVAL                                                     EINVAL
//	anything else                                              EIO
//
// A replication driver that is not Primary returns an error wrapping
// ErrReadOnly (EPERM: the client may retry elsewhere); while demoting it
// calls Refuse(ErrShutdown) so clients disconnect.
//
// WRITE_ZEROES: without NO_HOLE the backend may deallocate; with
// FAST_ZERO it fails with ENOTSUP, changing nothing, unless it can zero
// without writing (DeviceBackend: Discarder or ZeroWriter).
//
// # Kernel attach
//
// Linux only. CheckKernelNBD finds /sys/module/nbd or /dev/nbd0, runs
// `modprobe nbd` otherwise, and returns an error wrapping ErrNoKernelNBD
// (a *KernelError saying why) when there is still none: callers then serve
// the socket only and never show a /dev path. Attach then:
//
//  1. creates AttachOptions.Connections AF_UNIX socketpairs and serves one
//     end of each in-process with ServeKernelConn (no handshake: the
//     kernel is told size and flags directly, and uses simple replies);
//  2. sends generic netlink "nbd" CONNECT with INDEX (absent for any free
//     device; the reply carries the index chosen), SIZE_BYTES,
//     BLOCK_SIZE_BYTES (4096 by default: the kernel's 1024 breaks XFS),
//     TIMEOUT (0: wait forever), DEAD_CONN_TIMEOUT (30 s) and
//     SERVER_FLAGS = Server.KernelFlags (HAS_FLAGS|SEND_FLUSH|SEND_FUA|
//     SEND_TRIM|SEND_WRITE_ZEROES|CAN_MULTI_CONN: without SEND_FLUSH and
//     SEND_FUA the kernel never sends FLUSH or FUA), and SOCKETS
//     {SOCK_ITEM {SOCK_FD}}... with the kernel ends, then closes its copies;
//  3. without the netlink family, falls back to ioctls on /dev/nbdN:
//     SET_BLKSIZE, SET_SIZE_BLOCKS, CLEAR_SOCK, SET_FLAGS, SET_TIMEOUT,
//     SET_SOCK per socket, then DO_IT on a locked thread with every signal
//     blocked (a signal makes the kernel drop the sockets) until
//     /sys/block/nbdN/pid appears.
//
// Detach sends DISCONNECT (netlink) or NBD_DISCONNECT + CLEAR_SOCK
// (ioctl); the kernel sends NBD_CMD_DISC on every socket, the server
// finishes what is in flight, and Detach returns when all sockets are
// closed. Reconnect hands new sockets to a live device whose server died
// (netlink RECONFIGURE): a restarted daemon takes over /dev/nbdN without
// an unmount as long as it comes back within DEAD_CONN_TIMEOUT. Status
// reads the kernel's view (netlink STATUS).
//
// DeviceUsage tells whether /dev/nbdX is held (mounts by device number,
// holders, an O_EXCL probe, and open descriptors of every process), so
// `secondary` can refuse like DRBD does while the device is open;
// LinkDRBD creates /dev/drbdN and /dev/drbd/by-res/RES/VOL symlinks for
// scripts written for DRBD.
//
// Serving a kernel device from the same host can deadlock under memory
// pressure (the kernel writes back pages through the server, which may
// need memory to serve them); the daemon that serves it should mlockall
// and use O_DIRECT on its backing store.
package nbd
