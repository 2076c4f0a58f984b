// Package driver runs the pure replication core (replication.Node)
// against real disks, sockets, timers and the NBD front end: one Resource
// per drbd.conf resource on this node.
//
// # Usage
//
//	res, err := driver.New(driver.Options{Config: rc, Logger: log, RunDir: "/run/gdrbd", KernelNBD: true})
//	err = res.Attach(ctx)          // open disk + metadata; apply the AL of a crashed Primary
//	err = res.Connect(ctx, false)  // listen and connect to the peer (returns at once)
//	err = res.Primary(ctx, true)   // promote; serve RunDir/r0.nbd (and /dev/nbdX)
//	err = res.Wait(ctx, func(s driver.Status) bool { return s.State.PDsk == replication.UpToDate })
//	err = res.Secondary(ctx)       // replication.ErrDeviceInUse while a client is connected
//	err = res.Down(ctx)            // secondary, disconnect, detach, stop
//
// State-change refusals come back as replication.StateErr (the text DRBD
// prints after "State change failed:"); other errors are wrapped with
// words saying what failed.
//
// # One goroutine at a time runs the core
//
// The core is single-threaded. An event loop owns it and takes one input
// at a time from its inbox (a packet, a disk or metadata completion, a
// Sent token, a tick, an admin command, an NBD request), then pumps:
// while the node has a Ready, copy it, Advance, and carry it out in the
// order of the Ready contract. A socket reader with the packets that
// arrived (each one complete in its read-ahead, then one pump), or the
// AIO reaper with a batch of completions, runs the inputs and the pump
// itself instead when the loop is idle and nothing is queued for it
// (runInline, under the loop's mutex): a replicated write then crosses no
// extra thread on either node.
//
//	Events      -> zap: one Info line per state change (typed fields)
//	Dialect     -> a switch marker ahead of the Ready's packets on both
//	               sockets; start the meta reader (the data reader
//	               switched itself)
//	Messages    -> per socket, in order: written by the loop with one
//	               non-blocking writev while the socket's writer goroutine
//	               is idle (Token: Sent at once), the rest by that
//	               goroutine (Token: Sent after its write returned)
//	Net         -> connector start/stop, sockets closed (after the
//	               messages were queued, before the completions)
//	MetaWrites  -> metadata writer: pwrite, one fdatasync per batch
//	               (md-flushes), THEN MetaDone
//	DiskOps     -> aligned reads and writes (FUA: RWF_DSYNC) and flushes
//	               (IOCB_CMD_FDSYNC) of an O_DIRECT disk:
//	               one io_submit for the whole Ready (native AIO), by
//	               the loop while at most inlineAIO are in flight, else
//	               by a submitter goroutine (io_submit sleeps when the
//	               device has no free request tag); a reaper goroutine
//	               posts completions in batches and yields, so the loop
//	               runs at once;
//	               the rest (and flushes or FUA where the kernel refused
//	               them through AIO) to the disk worker pool: pread/pwrite/
//	               discard/zero/fdatasync; FUA = the write then fdatasync
//	Completions -> answer the NBD request (its reply is written at once
//	               when the connection's writer is idle, else queued; or
//	               wake the goroutine waiting for it); ahead of the
//	               Messages when the Ready has no P_DATA and no Net
//	Handlers    -> `sh -c CMD` with drbdadm 8.4's environment
//
// The loop never blocks on another goroutine or a socket: its queues to
// the workers are unbounded (the core bounds the work), its own socket
// writes are non-blocking, while workers wait for room in the inbox.
// Every other goroutine only touches the devices, its
// socket, and atomics the loop publishes (the receive backlog, the NBD
// server).
//
// # Connections
//
// The connector is DRBD 8.4's conn_connect: listen on the local address,
// connect to the peer every connect-int (from the local address), first
// socket P_INITIAL_DATA, second P_INITIAL_META, an accepted socket named
// by its first packet, crossed sockets resolved at random, both sockets
// checked alive after sock-check-timeout. Node.Connected gets
// resolve-conflicts = we accepted the meta socket. The data reader
// switches to the agreed dialect right after P_CONNECTION_FEATURES; the
// meta reader starts then. The data reader stops reading while the core's
// receive backlog is at max-buffers.
//
// A connection ends in order: P_DATA stops at once (its buffer is the
// application's, handed back by the completions that follow), the other
// queued packets still go out (a peer refusing the handshake must see our
// reasons), then FIN. A failure seen by the meta reader or a writer only
// makes the data reader read what already arrived (within ping-timeout)
// before the core is told, so that both sides of a refused handshake
// reach the same verdict.
//
// # Disks
//
// Attach opens the backing disk exclusively (O_DIRECT when it takes
// 512-byte writes), reads the v08 superblock, and when it is unclean and
// the node was Primary applies the activity log to the bitmap and writes
// the marks out before any new transaction can overwrite the ring; the AL
// numbering continues after the ring's newest transaction. The
// superblock is marked unclean (attached) before the core runs.
//
// # NBD
//
// The Resource is the nbd.Backend (and nbd.AsyncBackend: READ and WRITE
// are proposed from the NBD reader and answered from the loop, no
// goroutine per request) of its export: requests are split into
// core requests of at most 1 MiB (128 MiB for trim and zeroes), buffers
// used in place. A write overlapping one in flight waits for it, as DRBD's
// complete_conflicting_writes, so both replicas apply overlapping writes in
// the same order. A Secondary answers with nbd.ErrReadOnly (EPERM).
package driver
